package kmsemu

import (
	"bytes"
	"crypto/rand"
	"testing"
)

func testKey(t testing.TB) *keyRecord {
	k := &keyRecord{ID: "0b7c1d0e-2f3a-4b5c-8d6e-7f8091a2b3c4", Material: make(material, 32)}
	rand.Read(k.Material)
	return k
}

func TestBlobRoundTripAndBinding(t *testing.T) {
	k := testKey(t)
	ec := map[string]string{"a": "1", "b": "2"}
	blob, err := sealBlob(rand.Reader, k, []byte("hello"), ec)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) != blobMinSize+5 || string(blob[:4]) != blobMagic || blob[4] != blobVersion {
		t.Fatalf("blob layout: % x", blob)
	}
	if id, err := blobKeyID(blob); err != nil || id != k.ID {
		t.Fatalf("blobKeyID = %q, %v", id, err)
	}
	pt, err := openBlob(k, blob, map[string]string{"b": "2", "a": "1"})
	if err != nil || string(pt) != "hello" {
		t.Fatalf("openBlob = %q, %v", pt, err)
	}
	// Contexts that differ in any way, including by how pairs would
	// concatenate, fail.
	for _, other := range []map[string]string{nil, {"a": "1"}, {"a": "1", "b": "3"}, {"a": "1b", "": "2"}, {"a": "12", "b": ""}} {
		if pt, err := openBlob(k, blob, other); err == nil || pt != nil {
			t.Errorf("openBlob with context %v succeeded", other)
		}
	}
	// The same blob under another key id (header rewritten) fails.
	k2 := *k
	k2.ID = "1b7c1d0e-2f3a-4b5c-8d6e-7f8091a2b3c4"
	forged := bytes.Clone(blob)
	id2, _ := uuidBytes(k2.ID)
	copy(forged[5:], id2[:])
	if _, err := openBlob(&k2, forged, ec); err == nil {
		t.Error("blob re-labelled to another key id with the same material opened")
	}
	if _, err := openBlob(&k2, blob, ec); err == nil {
		t.Error("blob opened under a key with another id")
	}
}

func TestCanonicalContextIsInjective(t *testing.T) {
	a := canonicalContext(map[string]string{"ab": "c"})
	b := canonicalContext(map[string]string{"a": "bc"})
	if bytes.Equal(a, b) {
		t.Fatal("different contexts encode equally")
	}
	if !bytes.Equal(canonicalContext(nil), canonicalContext(map[string]string{})) {
		t.Fatal("nil and empty contexts differ")
	}
}

// FuzzOpenBlob: no panic on any bytes, nil plaintext on error, and no
// blob other than one sealed under the key opens.
func FuzzOpenBlob(f *testing.F) {
	k := testKey(f)
	good, _ := sealBlob(rand.Reader, k, []byte("seed plaintext"), map[string]string{"k": "v"})
	f.Add(good)
	f.Add(good[:blobMinSize])
	f.Add([]byte(blobMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		pt, err := openBlob(k, b, map[string]string{"k": "v"})
		if err != nil {
			if pt != nil {
				t.Fatal("plaintext returned with an error")
			}
			return
		}
		if !bytes.Equal(b, good) {
			t.Fatalf("a blob that was never sealed opened: % x", b)
		}
	})
}
