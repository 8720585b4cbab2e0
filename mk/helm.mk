# The Helm chart (deploy/helm/cqrsflow): rendered offline with Helm's Go
# library for every values file in its ci/ directory, and every rendered
# object decoded strictly into its Kubernetes type (deploy/helm/check, its
# own Go module so that Helm and the Kubernetes types stay out of the
# cqrsflow module). No helm binary, no cluster: only the Go module proxy
# on the first run.
#
# Without -race: the check runs no goroutines of its own, and building
# Helm and the Kubernetes types a second time with race instrumentation
# would double the cold build. The first run builds ~600 packages once;
# later runs come from the build cache.

HELM_CHECK_DIR := deploy/helm/check

.PHONY: test-helm

test-helm: ## render the Helm chart with every ci/ values file and decode every object strictly (no cluster, no helm binary)
	cd $(HELM_CHECK_DIR) && $(GO) vet ./... && $(GO) test -count=1 ./...

TEST_EXTRA += test-helm
