package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
	Sec   Security // the scheme and basic auth
}

// NewClient is a client of the agent its credentials describe.
func NewClient(c Credentials) (*Client, error) {
	hc, err := c.Security.HTTPClient("")
	if err != nil {
		return nil, err
	}
	return &Client{Addr: c.Addr, Token: c.Token, HTTP: hc, Sec: c.Security}, nil
}

// tokenHeader carries the API token (also accepted as a bearer token):
// its own header, so that HTTP basic auth can take Authorization.
const tokenHeader = "X-Canopy-Token"

// authorize puts a token and the basic auth on a request.
func (s Security) authorize(req *http.Request, token string) {
	if token != "" {
		req.Header.Set(tokenHeader, token)
	}
	if s.BasicUser != "" {
		req.SetBasicAuth(s.BasicUser, s.BasicPass)
	}
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
	req, err := http.NewRequestWithContext(ctx, method, c.Sec.Scheme()+"://"+c.Addr+path, body)
	if err != nil {
		return err
	}
	c.Sec.authorize(req, c.Token)
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
