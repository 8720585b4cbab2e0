// Package opscheck checks the operations files in deploy/ (Grafana
// dashboards, docker-compose.yml, Prometheus wiring) against the contracts
// the binaries implement: metric names from ARCHITECTURE.md, the config env
// vars the binaries read, their default ports and the files deploy/ ships.
package opscheck

import _ "go.yaml.in/yaml/v3" // used by the compose and provisioning checks
