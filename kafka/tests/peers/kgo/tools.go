//go:build tools

// Package kgo pins franz-go so that its kgo integration tests can run against a broker:
// go test github.com/twmb/franz-go/pkg/kgo (see kafka/tests/system/test_kgo.py).
package kgo

import _ "github.com/twmb/franz-go/pkg/kgo"
