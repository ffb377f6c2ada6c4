package testutil

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Proxy is a toxiproxy TCP proxy in the test process, standing between
// nodes to cut or stall the link it carries.
type Proxy struct {
	Port int
	p    *toxiproxy.Proxy
}

var proxyServer = toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())

// StartProxy listens on port (0: a free one) and forwards to upstream
// (host:port). It stops when the test ends.
func StartProxy(t testing.TB, port int, upstream string) *Proxy {
	t.Helper()
	x, err := TryStartProxy(t, port, upstream)
	if err != nil {
		t.Fatalf("proxy to %s: %v", upstream, err)
	}
	return x
}

// TryStartProxy is StartProxy that returns the error: a port chosen
// earlier may have been taken since by another process (tests of other
// packages run at the same time), and the caller can choose another.
func TryStartProxy(t testing.TB, port int, upstream string) (*Proxy, error) {
	t.Helper()
	if port == 0 {
		port = FreePorts(t, 1)[0]
	}
	return tryStartProxyAt(t, "127.0.0.1", port, upstream)
}

// StartProxyAt is StartProxy on another loopback address (127.0.0.2, say:
// a node advertised there with --advertise-host is reached only through
// proxies, on its own port numbers).
func StartProxyAt(t testing.TB, host string, port int, upstream string) *Proxy {
	t.Helper()
	x, err := tryStartProxyAt(t, host, port, upstream)
	if err != nil {
		t.Fatalf("proxy %s:%d to %s: %v", host, port, upstream, err)
	}
	return x
}

func tryStartProxyAt(t testing.TB, host string, port int, upstream string) (*Proxy, error) {
	p := toxiproxy.NewProxy(proxyServer, fmt.Sprintf("%s-%s-%d", t.Name(), host, port), fmt.Sprintf("%s:%d", host, port), upstream)
	if err := p.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(p.Stop)
	return &Proxy{Port: port, p: p}, nil
}

// Cut closes the listener and every connection: the link refuses.
func (x *Proxy) Cut() { x.p.Stop() }

// Restore undoes Cut.
func (x *Proxy) Restore() error { return x.p.Start() }

// Blackhole stalls the link both ways: connections stay open, nothing
// gets through (a partition that does not reset connections).
func (x *Proxy) Blackhole() error {
	for _, dir := range []string{"upstream", "downstream"} {
		spec := fmt.Sprintf(`{"name":"blackhole-%s","type":"timeout","stream":%q,"toxicity":1,"attributes":{"timeout":0}}`, dir, dir)
		if _, err := x.p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
			return err
		}
	}
	return nil
}

// Heal removes the toxics (Blackhole).
func (x *Proxy) Heal() { x.p.Toxics.ResetToxics(context.Background()) }

// HealClosing removes the toxics and closes every connection that went
// through them. The blackhole drops what it stalls, so a connection that
// carried on after Heal would deliver a stream with a hole in it, which
// no real network does (TCP delivers it late or resets): a test that
// checks what the nodes make of a healed partition must use this.
func (x *Proxy) HealClosing() error {
	x.p.Stop()
	x.Heal()
	return x.p.Start()
}

// StartNodeBehindInternalProxy starts a node (with extra environment and
// arguments) whose internal port other nodes reach through a proxy: the
// node advertises the proxy's port, chosen before the node starts. When
// another process, or the node itself, takes that port in between, it
// starts another node.
func StartNodeBehindInternalProxy(t testing.TB, env []string, extraArgs ...string) (*Node, *Proxy) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port := FreePorts(t, 1)[0]
		n := StartNodeEnv(t, env, append([]string{"--advertise-internal-port", strconv.Itoa(port)}, extraArgs...)...)
		p, err := TryStartProxy(t, port, fmt.Sprintf("127.0.0.1:%d", n.InternalPort))
		if err == nil {
			return n, p
		}
		n.Kill()
		if attempt == 5 {
			t.Fatalf("proxy to the internal port of a node: %v", err)
		}
	}
}
