// Package opscheck checks the operations files in deploy/ (Grafana
// dashboards, alert rules, docker-compose.yml, Prometheus wiring) and the
// package map against the contracts the binaries implement: the metric
// table and the package map of docs/architecture.md, the config env vars
// the binaries read, their default ports and the files deploy/ ships.
package opscheck

import _ "go.yaml.in/yaml/v3" // used by the compose and provisioning checks
