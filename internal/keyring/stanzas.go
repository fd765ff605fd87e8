package keyring

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age/armor"
)

// maxHeaderSize bounds the age header RecipientTypes reads.
const maxHeaderSize = 64 << 10

// RecipientTypes returns the type of each recipient stanza in an age
// file's header ("X25519" for an age1… recipient), binary or armored,
// without decrypting anything: how many recipients the file is encrypted
// to, and of what kind. age does not record which recipients; a signer
// of the file's statement names them, and this is what can be checked.
func RecipientTypes(ciphertext []byte) ([]string, error) {
	var src io.Reader = bytes.NewReader(ciphertext)
	if bytes.HasPrefix(bytes.TrimLeft(ciphertext, " \t\r\n"), []byte(armor.Header)) {
		src = armor.NewReader(src)
	}
	br := bufio.NewReader(io.LimitReader(src, maxHeaderSize))
	line, err := br.ReadString('\n')
	if err != nil || line != "age-encryption.org/v1\n" {
		return nil, errors.New("not an age file: want the age-encryption.org/v1 header")
	}
	var types []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("age header: truncated or longer than %d bytes", maxHeaderSize)
		}
		switch {
		case strings.HasPrefix(line, "---"):
			if len(types) == 0 {
				return nil, errors.New("age header: no recipient stanza")
			}
			return types, nil
		case strings.HasPrefix(line, "-> "):
			f := strings.Fields(line[3:])
			if len(f) == 0 {
				return nil, errors.New("age header: a stanza without a type")
			}
			types = append(types, f[0])
		}
	}
}
