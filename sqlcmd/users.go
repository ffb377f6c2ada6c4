package sqlcmd

import "strings"

// Account statements MySQL has and GMS's grammar lacks.
type (
	// SetPassword is SET PASSWORD [FOR 'user'@'host'] = 'password' (or
	// = PASSWORD('password')); without FOR, the current user's.
	SetPassword struct {
		User, Host string
		Current    bool
		Password   string
	}
	// AlterUserRequire is ALTER USER [IF EXISTS] 'user'@'host' [auth]
	// REQUIRE {SSL | X509 | NONE}: Rest is the statement without the
	// REQUIRE clause (for the engine, when it changes more).
	AlterUserRequire struct {
		User, Host string
		IfExists   bool
		Require    string // SSL, X509 or NONE
		Rest       string
		HasMore    bool // Rest does more than name the account
	}
)

func (SetPassword) command()      {}
func (AlterUserRequire) command() {}

// parseAccountStatement recognizes SET PASSWORD and ALTER USER … REQUIRE.
func parseAccountStatement(stmt string, p *parser) Command {
	switch {
	case p.keyword("SET", "PASSWORD"):
		c := SetPassword{Current: true}
		if p.keyword("FOR") {
			user, host, ok := p.account()
			if !ok {
				return nil
			}
			c.User, c.Host, c.Current = user, host, false
		}
		if !p.keyword("=") {
			return nil
		}
		if p.keyword("PASSWORD", "(") {
			pw := p.next()
			if !pw.quoted || !p.keyword(")") {
				return nil
			}
			c.Password = pw.text
		} else {
			pw := p.next()
			if !pw.quoted {
				return nil
			}
			c.Password = pw.text
		}
		if p.done() {
			return c
		}
	case p.keyword("ALTER", "USER"):
		c := AlterUserRequire{}
		c.IfExists = p.keyword("IF", "EXISTS")
		user, host, ok := p.account()
		if !ok {
			return nil
		}
		c.User, c.Host = user, host
		afterAccount := p.pos
		for i := p.pos; i < len(p.toks); i++ {
			t := p.toks[i]
			if t.quoted || !strings.EqualFold(t.text, "REQUIRE") || i+1 >= len(p.toks) {
				continue
			}
			req := strings.ToUpper(p.toks[i+1].text)
			if req != "SSL" && req != "X509" && req != "NONE" || p.toks[i+1].quoted {
				return nil
			}
			c.Require = req
			end := len(stmt)
			if i+2 < len(p.toks) {
				if strings.EqualFold(p.toks[i+2].text, "AND") {
					return nil // several TLS options: not supported
				}
				end = p.toks[i+2].start
			}
			c.Rest = strings.TrimSpace(stmt[:t.start] + " " + stmt[end:])
			c.HasMore = i > afterAccount || i+2 < len(p.toks)
			return c
		}
	}
	return nil
}
