package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/kubev2v/must-gather-functions/client"
)

// Start a targeted gathering of a Forklift plan, wait until it ends, and
// save its archive.
func Example() {
	c, err := client.New("https://must-gather.example.com", client.WithToken(os.Getenv("TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	g, err := c.Create(ctx, client.Request{Plan: "mig-plan", Namespace: "openshift-mtv", CustomName: "plan:mig-plan"})
	if errors.Is(err, client.ErrInvalid) {
		var ae *client.APIError
		errors.As(err, &ae)
		log.Fatalf("field %s: %s", ae.Field, ae.Message)
	}
	if err != nil {
		log.Fatal(err)
	}
	g, err = c.Wait(ctx, fmt.Sprint(g.ID), client.WaitOptions{
		Progress: func(g *client.Gathering) { log.Printf("gathering %d: %s", g.ID, g.Status) },
	})
	if err != nil {
		log.Fatal(err)
	}
	if g.Status != client.StatusCompleted {
		log.Fatalf("gathering %d ended in %s:\n%s", g.ID, g.Status, g.ExecOutput)
	}
	f, err := os.Create(g.ArchiveName)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if _, err := c.Download(ctx, fmt.Sprint(g.ID), f, client.DownloadOptions{}); err != nil {
		log.Fatal(err)
	}
}
