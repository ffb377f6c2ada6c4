package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// APIError is an error answer of an agent.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

// Client calls an agent's API with a token.
type Client struct {
	Addr  string // host:port
	Token string
	HTTP  *http.Client
}

// NewClient is a client of the agent at addr.
func NewClient(addr, token string) *Client {
	return &Client{Addr: addr, Token: token, HTTP: &http.Client{Timeout: 10 * time.Minute}}
}

// fromHost is a client whose connections leave from the given local
// address: an agent calls other agents from its host's address, which is
// how they know which host calls.
func fromHost(host string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(host)}}
	return &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{DialContext: d.DialContext}}
}

// Call sends a request (in as the JSON body, nil for none) and decodes the
// answer into out (nil: ignore it).
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Addr+path, body)
	if err != nil {
		return err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("agent %s: %w", c.Addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("agent %s: %w", c.Addr, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(b))
		}
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("agent %s: %s %s: %w", c.Addr, method, path, err)
		}
	}
	return nil
}
