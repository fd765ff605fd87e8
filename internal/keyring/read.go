package keyring

import (
	"errors"
	"fmt"
	"slices"
)

// keyEntry is one element of "keys" as read from the JSON.
type keyEntry struct {
	rawID     []byte
	id        string // set only when rawID is a valid id
	algorithm string
	pem       []byte       // unescaped private_key_pem, wiped by ParseKeyring
	policy    *policyEntry // nil when the key has no "policy"
	has       struct{ id, algorithm, pem bool }
}

// policyEntry is a key's "policy" as read from the JSON: each field is
// checked on its own; what refers to other parts of the keyring (client
// ids, kinds against the algorithm) is checked by ParseKeyring.
type policyEntry struct {
	clients    []string // valid ids, no duplicates
	kinds      []string // known kinds, no duplicates; nil when absent
	rate       *Rate
	maxMessage int
}

// clientEntry is one element of "clients" as read from the JSON.
type clientEntry struct {
	id      string
	rate    *Rate
	secrets [][]byte // decoded, ClientSecretSize each; wiped by ParseKeyring unless a Client took them
}

// keyringHeader is what a keyring says about itself besides its keys.
type keyringHeader struct {
	format   int
	id       string // Format2 only
	version  uint64 // Format2 only
	audience string
	clients  []clientEntry
	has      struct{ audience, clients bool }
}

// wipe clears every secret the header holds.
func (h *keyringHeader) wipe() {
	for _, c := range h.clients {
		for _, s := range c.secrets {
			clear(s)
		}
	}
}

// krReader reads a keyring's JSON, turning every problem into a
// *ParseError that names the keyring, the key and the field.
type krReader struct {
	r     *jsonReader
	name  string
	index int    // the key being read, -1 outside "keys"
	keyID string // its id, once read and valid
}

func (p *krReader) fail(field string, err error) error {
	if pe, ok := err.(*ParseError); ok {
		return pe
	}
	var dup *duplicateFieldError
	if errors.As(err, &dup) {
		field = quoteName(dup.name)
	}
	if p.index < 0 {
		return &ParseError{Keyring: p.name, Index: -1, Field: field, Err: err}
	}
	return &ParseError{Keyring: p.name, Index: p.index, KeyID: p.keyID, Field: field, Err: err}
}

// object reads a nested object at path (e.g. "policy", "clients[2]"), so
// a member given twice is reported as path.name.
func (p *krReader) object(path string, field func(name string) error) error {
	err := p.r.object(field)
	if _, ok := err.(*ParseError); ok || err == nil {
		return err
	}
	var dup *duplicateFieldError
	if errors.As(err, &dup) {
		return p.fail(path+"."+dup.name, errors.New("field appears twice"))
	}
	return p.fail("", err)
}

// want checks the JSON type of the next value.
func (p *krReader) want(field, kind, what string) error {
	if k := p.r.kind(); k != kind {
		return p.fail(field, fmt.Errorf("want %s, got %s", what, k))
	}
	return nil
}

// idList reads an array of distinct, well-formed ids (client ids).
func (p *krReader) idList(field string) ([]string, error) {
	if err := p.want(field, "array", "an array of client ids"); err != nil {
		return nil, err
	}
	var ids []string
	err := p.r.array(func(i int) error {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := p.want(f, "string", "a client id"); err != nil {
			return err
		}
		s, err := p.r.str()
		if err != nil {
			return p.fail(f, err)
		}
		if err := checkID(s); err != nil {
			return p.fail(f, fmt.Errorf("client id %v", err))
		}
		if j := slices.Index(ids, string(s)); j >= 0 {
			return p.fail(f, fmt.Errorf("client %s is listed twice (also %s[%d])", quoteName(string(s)), field, j))
		}
		ids = append(ids, string(s))
		return nil
	})
	if err != nil {
		return nil, p.fail(field, err)
	}
	if len(ids) == 0 {
		return nil, p.fail(field, errors.New("empty, want the ids of the clients that may use this key (omit the policy to let no client use it)"))
	}
	return ids, nil
}

// kinds reads an array of distinct request kinds.
func (p *krReader) kinds(field string) ([]string, error) {
	const want = `an array of request kinds ("message", "digest")`
	if err := p.want(field, "array", want); err != nil {
		return nil, err
	}
	var kinds []string
	err := p.r.array(func(i int) error {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := p.want(f, "string", `a request kind, "message" or "digest"`); err != nil {
			return err
		}
		s, err := p.r.str()
		if err != nil {
			return p.fail(f, err)
		}
		k := string(s)
		if k != KindMessage && k != KindDigest {
			return p.fail(f, fmt.Errorf(`unknown request kind %s, want "message" or "digest"`, quoteName(k)))
		}
		if slices.Contains(kinds, k) {
			return p.fail(f, fmt.Errorf("kind %q is listed twice", k))
		}
		kinds = append(kinds, k)
		return nil
	})
	if err != nil {
		return nil, p.fail(field, err)
	}
	if len(kinds) == 0 {
		return nil, p.fail(field, errors.New(`empty, want at least one kind ("message", "digest"), or omit kinds to allow every kind the algorithm signs`))
	}
	return kinds, nil
}

// rate reads {"per_second": N, "burst": B}; both are required.
func (p *krReader) rate(field string) (*Rate, error) {
	if err := p.want(field, "object", `an object {"per_second": N, "burst": B}`); err != nil {
		return nil, err
	}
	var r Rate
	var hasPS, hasBurst bool
	err := p.object(field, func(name string) error {
		f := field + "." + name
		switch name {
		case "per_second":
			hasPS = true
			if err := p.want(f, "number", "a number of signatures per second"); err != nil {
				return err
			}
			v, err := p.r.decimal(RateDecimals)
			if err != nil {
				return p.fail(f, err)
			}
			if v <= 0 || v > MaxRatePerSecond {
				return p.fail(f, fmt.Errorf("want more than 0 and at most %d, with at most %d digits after the decimal point (0.5 is one signature every 2 s)", MaxRatePerSecond, RateDecimals))
			}
			r.PerSecond = v
		case "burst":
			hasBurst = true
			if err := p.want(f, "number", "an integer"); err != nil {
				return err
			}
			v, err := p.r.uint()
			if err != nil {
				return p.fail(f, err)
			}
			if v < 1 || v > MaxBurst {
				return p.fail(f, fmt.Errorf("%d, want 1 to %d: how many signatures may come at once", v, MaxBurst))
			}
			r.Burst = v
		default:
			return p.fail(field+"."+quoteName(name), errors.New("unknown field, want per_second and burst"))
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case !hasPS:
		return nil, p.fail(field+".per_second", errors.New("missing, want the number of signatures per second (e.g. 5 or 0.5)"))
	case !hasBurst:
		return nil, p.fail(field+".burst", errors.New("missing, want how many signatures may come at once (at least 1)"))
	}
	return &r, nil
}

// policy reads a key's "policy" object.
func (p *krReader) policy() (*policyEntry, error) {
	if err := p.want("policy", "object", "an object"); err != nil {
		return nil, err
	}
	pe := &policyEntry{}
	var hasClients bool
	err := p.object("policy", func(name string) error {
		var err error
		switch name {
		case "clients":
			hasClients = true
			pe.clients, err = p.idList("policy.clients")
		case "kinds":
			pe.kinds, err = p.kinds("policy.kinds")
		case "rate":
			pe.rate, err = p.rate("policy.rate")
		case "max_message_bytes":
			if err := p.want("policy.max_message_bytes", "number", "an integer"); err != nil {
				return err
			}
			v, err := p.r.uint()
			if err != nil {
				return p.fail("policy.max_message_bytes", err)
			}
			if v < 1 || v > MaxMessageBytesLimit {
				return p.fail("policy.max_message_bytes", fmt.Errorf("%d, want 1 to %d bytes", v, MaxMessageBytesLimit))
			}
			pe.maxMessage = v
		default:
			return p.fail("policy."+quoteName(name), errors.New("unknown field, want clients, kinds, rate and max_message_bytes"))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if !hasClients {
		return nil, p.fail("policy.clients", errors.New("missing, want the ids of the clients that may use this key"))
	}
	return pe, nil
}

// key reads one element of "keys".
func (p *krReader) key(e *keyEntry) error {
	if err := p.want("", "object", "an object"); err != nil {
		return err
	}
	err := p.r.object(func(field string) error {
		if field == "policy" {
			pol, err := p.policy()
			e.policy = pol
			return err
		}
		var dst *[]byte
		switch field {
		case "id":
			e.has.id = true
			dst = &e.rawID
		case "algorithm":
			e.has.algorithm = true
		case "private_key_pem":
			e.has.pem = true
			dst = &e.pem
		default:
			return p.fail(quoteName(field), errors.New("unknown field, want id, algorithm, private_key_pem and (version 2) policy"))
		}
		if err := p.want(field, "string", "a string"); err != nil {
			return err
		}
		s, err := p.r.str()
		if err != nil {
			return p.fail(field, err)
		}
		switch field {
		case "id":
			*dst = s
			if checkID(s) == nil {
				e.id, p.keyID = string(s), string(s)
			}
		case "algorithm":
			e.algorithm = string(s)
		default:
			*dst = s
		}
		return nil
	})
	if err != nil {
		return p.fail("", err)
	}
	return nil
}

// secrets reads a client's "secrets": one or two hex strings, decoded
// into c.secrets as they are read (so they are wiped on error too).
func (p *krReader) secrets(field string, c *clientEntry) error {
	const want = "an array of one or two secrets, 64 hex digits each"
	if err := p.want(field, "array", want); err != nil {
		return err
	}
	err := p.r.array(func(i int) error {
		f := fmt.Sprintf("%s[%d]", field, i)
		if i >= MaxClientSecrets {
			return p.fail(field, fmt.Errorf("more than %d secrets, want one, or two while rotating", MaxClientSecrets))
		}
		if err := p.want(f, "string", "64 hex digits"); err != nil {
			return err
		}
		h, err := p.r.str()
		if err != nil {
			return p.fail(f, err)
		}
		s, err := decodeSecret(h)
		clear(h)
		if err != nil {
			return p.fail(f, err)
		}
		c.secrets = append(c.secrets, s)
		return nil
	})
	if err != nil {
		return p.fail(field, err)
	}
	if len(c.secrets) == 0 {
		return p.fail(field, errors.New("empty, "+want))
	}
	return nil
}

// client reads one element of "clients" into c.
func (p *krReader) client(i int, c *clientEntry) error {
	path := fmt.Sprintf("clients[%d]", i)
	if err := p.want(path, "object", "an object"); err != nil {
		return err
	}
	var hasID, hasSecrets bool
	err := p.object(path, func(name string) error {
		f := path + "." + name
		switch name {
		case "id":
			hasID = true
			if err := p.want(f, "string", "a string"); err != nil {
				return err
			}
			s, err := p.r.str()
			if err != nil {
				return p.fail(f, err)
			}
			if err := checkID(s); err != nil {
				return p.fail(f, err)
			}
			c.id = string(s)
			return nil
		case "secrets":
			hasSecrets = true
			return p.secrets(f, c)
		case "rate":
			r, err := p.rate(f)
			c.rate = r
			return err
		default:
			return p.fail(path+"."+quoteName(name), errors.New("unknown field, want id, secrets and rate"))
		}
	})
	switch {
	case err != nil:
		return err
	case !hasID:
		return p.fail(path+".id", errors.New("missing, want the client's id"))
	case !hasSecrets:
		return p.fail(path+".secrets", errors.New("missing, want one or two secrets, 64 hex digits each"))
	}
	return nil
}

// clients reads the top-level "clients" array into hdr.
func (p *krReader) clients(hdr *keyringHeader) error {
	if err := p.want("clients", "array", "an array of clients"); err != nil {
		return err
	}
	err := p.r.array(func(i int) error {
		hdr.clients = append(hdr.clients, clientEntry{})
		return p.client(i, &hdr.clients[len(hdr.clients)-1])
	})
	if err != nil {
		return p.fail("clients", err)
	}
	if len(hdr.clients) == 0 {
		return p.fail("clients", errors.New("empty, want at least one client (omit clients for an open keyring, which anyone may use)"))
	}
	return nil
}

// readKeyringJSON reads the JSON structure, checking syntax, field names and
// types, each field on its own, and the version. Even on error, the entries
// and header returned so far hold PEM buffers and client secrets the caller
// must wipe.
func readKeyringJSON(name string, b []byte) (hdr keyringHeader, entries []keyEntry, err error) {
	p := &krReader{r: &jsonReader{b: b}, name: name, index: -1}
	if len(b) == 0 {
		return hdr, nil, p.fail("", errors.New("empty plaintext, want a JSON object"))
	}
	var version int
	var hasVersion, hasKeys, hasID, hasKeyringVersion bool
	err = p.r.object(func(field string) error {
		switch field {
		case "version":
			hasVersion = true
			if k := p.r.kind(); k != "number" {
				return p.fail("version", fmt.Errorf("want the number %d or %d, got %s", Format1, Format2, k))
			}
			v, err := p.r.uint()
			if err != nil {
				return p.fail("version", err)
			}
			version = v
		case "keyring_id":
			hasID = true
			if err := p.want("keyring_id", "string", "a string"); err != nil {
				return err
			}
			s, err := p.r.str()
			if err != nil {
				return p.fail("keyring_id", err)
			}
			if err := checkID(s); err != nil {
				return p.fail("keyring_id", err)
			}
			hdr.id = string(s)
		case "keyring_version":
			hasKeyringVersion = true
			if err := p.want("keyring_version", "number", "an unsigned integer"); err != nil {
				return err
			}
			v, err := p.r.uint64()
			if err != nil {
				return p.fail("keyring_version", err)
			}
			hdr.version = v
		case "audience":
			hdr.has.audience = true
			if err := p.want("audience", "string", "a string"); err != nil {
				return err
			}
			s, err := p.r.str()
			if err != nil {
				return p.fail("audience", err)
			}
			if err := checkAudience(s); err != nil {
				return p.fail("audience", err)
			}
			hdr.audience = string(s)
		case "clients":
			hdr.has.clients = true
			return p.clients(&hdr)
		case "keys":
			hasKeys = true
			if err := p.want("keys", "array", "an array"); err != nil {
				return err
			}
			err := p.r.array(func(i int) error {
				p.index, p.keyID = i, ""
				entries = append(entries, keyEntry{})
				return p.key(&entries[len(entries)-1])
			})
			p.index, p.keyID = -1, ""
			return err
		default:
			return p.fail(quoteName(field), errors.New("unknown field, want version, keys, and in version 2 keyring_id, keyring_version, audience and clients"))
		}
		return nil
	})
	if err == nil {
		p.index = -1
		err = p.r.end()
	}
	if err != nil {
		return hdr, entries, p.fail("", err)
	}
	hdr.format = version
	return hdr, entries, checkFormat(p, version, hasVersion, hasID, hasKeyringVersion, hasKeys, &hdr, entries)
}

// checkFormat checks the version and which fields it requires or forbids.
func checkFormat(p *krReader, version int, hasVersion, hasID, hasKeyringVersion, hasKeys bool, hdr *keyringHeader, entries []keyEntry) error {
	v2only := func(field string) error {
		return p.fail(field, fmt.Errorf("a field of version %d, and this keyring says version %d", Format2, Format1))
	}
	switch {
	case !hasVersion:
		return p.fail("version", fmt.Errorf("missing, want %d or %d", Format1, Format2))
	case version != Format1 && version != Format2:
		return p.fail("version", fmt.Errorf("unsupported version %d, want %d or %d", version, Format1, Format2))
	case version == Format1 && hasID:
		return v2only("keyring_id")
	case version == Format1 && hasKeyringVersion:
		return v2only("keyring_version")
	case version == Format1 && hdr.has.audience:
		return v2only("audience")
	case version == Format1 && hdr.has.clients:
		return v2only("clients")
	case version == Format2 && !hasID:
		return p.fail("keyring_id", errors.New("missing, want the keyring's id (version 2)"))
	case version == Format2 && !hasKeyringVersion:
		return p.fail("keyring_version", errors.New("missing, want the keyring's version, an unsigned integer (version 2)"))
	case !hasKeys:
		return p.fail("keys", errors.New("missing, want an array of keys"))
	case len(entries) == 0:
		return p.fail("keys", errors.New("empty, want at least one key"))
	}
	if version == Format1 {
		for i, e := range entries {
			if e.policy != nil {
				p.index, p.keyID = i, e.id
				return v2only("policy")
			}
		}
	}
	return nil
}
