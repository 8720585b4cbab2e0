DROP TABLE IF EXISTS relay_members;
