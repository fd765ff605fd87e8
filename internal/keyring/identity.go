package keyring

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"unicode/utf8"

	"filippo.io/age"
)

// MaxIdentityFileSize bounds an age key file.
const MaxIdentityFileSize = 64 << 10

// Identity is a parsed age key file: one or more X25519 identities, all
// tried when decrypting. It formats and logs as REDACTED.
type Identity struct {
	ids        []age.Identity
	recipients []string
}

// ParseIdentity parses an age key file as age-keygen writes it: "#"
// comment lines (created, public key), blank lines and one or more
// AGE-SECRET-KEY-1… lines. Only X25519 identities are accepted: the
// post-quantum AGE-SECRET-KEY-PQ-1… kind of age ≥ 1.3 isn't readable by the
// age 1.1 CLI that operators use to encrypt keyrings, and plugin and SSH
// identities aren't supported.
//
// keyFile is secret: the caller keeps ownership and should wipe it. Errors
// give the line number and what was expected, never the line. Each secret
// line does become an immutable string when handed to age, and age keeps
// its own copy of the key; neither can be wiped.
func ParseIdentity(keyFile []byte) (*Identity, error) {
	if len(keyFile) > MaxIdentityFileSize {
		return nil, fmt.Errorf("age identity: key file is %d bytes, want at most %d", len(keyFile), MaxIdentityFileSize)
	}
	id := &Identity{}
	n := 0
	for line := range bytes.Lines(keyFile) {
		n++
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		switch {
		case !utf8.Valid(line):
			return nil, fmt.Errorf("age identity: line %d: invalid UTF-8", n)
		case bytes.HasPrefix(line, []byte("AGE-SECRET-KEY-PQ-1")):
			return nil, fmt.Errorf("age identity: line %d: post-quantum (AGE-SECRET-KEY-PQ-1…) identities are not supported, want an X25519 identity (AGE-SECRET-KEY-1…, age-keygen without -pq)", n)
		case bytes.HasPrefix(line, []byte("AGE-SECRET-KEY-1")):
			x, err := age.ParseX25519Identity(string(line))
			if err != nil {
				// age's message may describe the bad characters; the line
				// is secret, so say only what kind of problem it is.
				return nil, fmt.Errorf("age identity: line %d: malformed X25519 secret key (bad bech32 encoding or checksum)", n)
			}
			id.ids = append(id.ids, x)
			id.recipients = append(id.recipients, x.Recipient().String())
		case bytes.HasPrefix(line, []byte("age1")):
			return nil, fmt.Errorf("age identity: line %d: this is a recipient (public key), want the identity (AGE-SECRET-KEY-1…)", n)
		default:
			return nil, fmt.Errorf("age identity: line %d: not an age X25519 identity, want a line starting AGE-SECRET-KEY-1 (comments start with #)", n)
		}
	}
	if len(id.ids) == 0 {
		return nil, errors.New("age identity: no identities found, want at least one AGE-SECRET-KEY-1… line")
	}
	return id, nil
}

// Recipients returns the public recipients (age1…) of the identities, in
// file order: what keyrings must be encrypted to.
func (i *Identity) Recipients() []string { return append([]string(nil), i.recipients...) }

// String returns REDACTED.
func (i *Identity) String() string { return redacted }

// Format makes every fmt verb print REDACTED.
func (i *Identity) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// LogValue logs REDACTED.
func (i *Identity) LogValue() slog.Value { return slog.StringValue(redacted) }
