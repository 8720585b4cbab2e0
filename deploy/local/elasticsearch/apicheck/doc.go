// Package apicheck holds an integration test (build tag integration) that
// pins down which Elasticsearch APIs the local node started by
// deploy/local/es.sh serves: the jars on Maven Central are server core plus
// transport-netty4, without the distribution's modules (rest-root is replaced
// by the launcher's own RootInfoPlugin; reindex, painless, analysis-common
// and ingest are absent). Projector and query code may rely on every API the
// test exercises.
package apicheck
