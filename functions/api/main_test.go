package api

import (
	"testing"

	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// TestMain stops the MinIO server of the download benchmark, if started.
func TestMain(m *testing.M) { testenv.Main(m) }
