// Package natsserver runs a nats-server with JetStream inside the process,
// for the embedded mode and for tests.
package natsserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options configures an embedded server.
type Options struct {
	// Host is the address to listen on; loopback unless you mean otherwise.
	Host string
	// Port for clients; -1 picks a random free port.
	Port int
	// StoreDir is where JetStream keeps its streams on disk.
	StoreDir string
	// Logger receives the server's log; nil keeps it silent.
	Logger server.Logger
	// TLS, if set, makes clients connect over TLS (tls://); with
	// ClientAuth set to tls.RequireAndVerifyClientCert it also verifies
	// their certificates.
	TLS *tls.Config
	// Username and Password, if set, are required of every client.
	Username string
	Password string
	// Name is the server's name, which must differ between the nodes of a
	// cluster; default "must-gather-functions".
	Name string
	// Cluster, if set, makes the server a node of a JetStream cluster.
	Cluster *Cluster
}

// Cluster is where a node of a cluster listens for routes and which other
// nodes it routes to.
type Cluster struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// Port for routes from the other nodes; on Options.Host.
	Port int
	// Routes are the route URLs of the nodes (nats-route://host:port); a
	// node may list its own.
	Routes []string
}

// Server is a running embedded nats-server.
type Server struct {
	*server.Server
}

// Start starts a server and waits until it accepts connections.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.StoreDir == "" {
		return nil, errors.New("natsserver: StoreDir is required")
	}
	if o.Name == "" {
		o.Name = "must-gather-functions"
	}
	opts := &server.Options{
		ServerName: o.Name,
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		Username:   o.Username,
		Password:   o.Password,
	}
	if c := o.Cluster; c != nil {
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: o.Host, Port: c.Port}
		opts.Routes = server.RoutesFromStr(strings.Join(c.Routes, ","))
	}
	if o.TLS != nil {
		opts.TLS, opts.TLSConfig = true, o.TLS
		opts.TLSVerify = o.TLS.ClientAuth == tls.RequireAndVerifyClientCert
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsserver: %w", err)
	}
	if o.Logger != nil {
		s.SetLoggerV2(o.Logger, false, false, false)
	}
	go s.Start()
	wait := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	if !s.ReadyForConnections(wait) {
		s.Shutdown()
		return nil, fmt.Errorf("natsserver: not ready for connections on %s:%d within %s", o.Host, o.Port, wait)
	}
	return &Server{s}, nil
}

// Connect returns a client connection to the server that does not go over
// the network.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.Server), nats.Name("must-gather-functions")}, opts...)
	return nats.Connect("", opts...)
}

// Stop shuts the server down and waits for it.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}
