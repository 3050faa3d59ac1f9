module github.com/kubev2v/must-gather-functions/client

go 1.26.0
