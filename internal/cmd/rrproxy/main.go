// Command rrproxy serves a round-robin reverse proxy over several mediator
// instances (tests and scripts/cluster use it as the load balancer).
//
//	rrproxy -listen 127.0.0.1:8080 http://127.0.0.1:8081 http://127.0.0.1:8082
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/openmediator/mediator/internal/rrproxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	flag.Parse()
	p, err := rrproxy.New(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	slog.Info("round-robin proxy", "listen", *listen, "backends", flag.Args())
	srv := &http.Server{Addr: *listen, Handler: p, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
