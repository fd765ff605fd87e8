package hd

import (
	"errors"
	"fmt"
)

// The kinds of failure, for errors.Is. Every error the package returns
// wraps exactly one of them and says, in its own text, what was wrong and
// what was expected; none repeats the secret input (a mnemonic word, a
// seed byte, an xprv character) that caused it.
var (
	// BIP39.
	ErrEntropyLength      = errors.New("hd: entropy length")
	ErrMnemonicEncoding   = errors.New("hd: mnemonic encoding")
	ErrMnemonicTooLong    = errors.New("hd: mnemonic too long")
	ErrMnemonicWordCount  = errors.New("hd: mnemonic word count")
	ErrMnemonicWord       = errors.New("hd: mnemonic word not in the BIP39 English list")
	ErrMnemonicChecksum   = errors.New("hd: mnemonic checksum")
	ErrPassphraseEncoding = errors.New("hd: passphrase encoding")

	// Seeds, curves and derivation.
	ErrSeedLength    = errors.New("hd: seed length")
	ErrCurve         = errors.New("hd: unknown curve")
	ErrHardenedOnly  = errors.New("hd: curve allows hardened derivation only")
	ErrHardenedChild = errors.New("hd: hardened child of a public key")
	ErrDepth         = errors.New("hd: depth beyond 255")
	ErrDestroyed     = errors.New("hd: key destroyed")
	ErrPublicKey     = errors.New("hd: invalid public key")
	ErrChainCode     = errors.New("hd: invalid chain code")
	ErrUnsupported   = errors.New("hd: not defined for this curve")

	// Paths.
	ErrPath        = errors.New("hd: invalid derivation path")
	ErrPathTooDeep = errors.New("hd: derivation path too deep")
	ErrPathIndex   = errors.New("hd: derivation path index out of range")

	// Extended key serialization (BIP32 Base58Check).
	ErrXKeyEncoding  = errors.New("hd: extended key is not Base58")
	ErrXKeyLength    = errors.New("hd: extended key length")
	ErrXKeyChecksum  = errors.New("hd: extended key checksum")
	ErrXKeyVersion   = errors.New("hd: extended key version")
	ErrXKeyKeyData   = errors.New("hd: extended key data")
	ErrXKeyZeroDepth = errors.New("hd: extended key at depth 0 with a parent")
)

// errorf returns an error that wraps kind, reading "kind: detail".
func errorf(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{kind}, args...)...)
}
