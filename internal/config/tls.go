package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// ReadCAFile reads a PEM file of CA certificates named by the setting env.
// A missing, unreadable or certificate-less file is an error naming the
// setting, so a typo in a path fails at start-up, not at the first
// handshake.
func ReadCAFile(env, path string) ([]byte, *x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", env, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, nil, fmt.Errorf("%s: %s holds no PEM certificate", env, path)
	}
	return b, pool, nil
}

// LoadKeyPair loads a client certificate and its key (PEM), naming both
// settings when they do not load or do not match.
func LoadKeyPair(certEnv, certFile, keyEnv, keyFile string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s/%s: %w", certEnv, keyEnv, err)
	}
	return c, nil
}
