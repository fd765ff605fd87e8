package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/enclave-signer/enclave-signer/internal/imagepins"
	"github.com/enclave-signer/enclave-signer/internal/kms"
	"github.com/enclave-signer/enclave-signer/internal/policy"
)

func runImage(e *env) error {
	return subcommand(e, "image", map[string]func(*env) error{"pins": runImagePins})
}

// imagePinsJSON is what signer image pins prints, and the members make eif
// adds to measurements.json.
type imagePinsJSON struct {
	ImageID string         `json:"ImageID"`
	Pins    imagepins.Pins `json:"Pins"`
}

// runImagePins is `signer image pins [--measurements FILE] ARCHIVE`: the
// pins of the enclave image in a docker-archive (make image's
// bin/enclave-signer-ARCH.tar), read from its config's environment, with
// the image id. With --measurements, FILE (nitro-cli build-enclave's
// output for that image) is printed with ImageID and Pins added, as make
// eif records it for signer policy update. A KMS key pin signerd would
// refuse at start is an error.
func runImagePins(e *env) error {
	fs := newFlagSet(e, "image pins")
	measurements := fs.String("measurements", "", "`FILE` with nitro-cli build-enclave's JSON for this image: print it with the image id and pins added")
	args, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return usageErrorf("image pins: want one argument, the image's docker-archive (make image writes bin/enclave-signer-amd64.tar)")
	}
	f, err := inputFile{cmd: "image pins", arg: "ARCHIVE", path: args[0],
		want: "the image's docker-archive (make image writes bin/enclave-signer-amd64.tar)"}.open()
	if err != nil {
		return err
	}
	img, err := imagepins.ReadArchive(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("image pins: %s: %w", args[0], err)
	}
	for _, k := range img.Pins.KMSKeys {
		if _, err := kms.ParseKeyARN(k); err != nil {
			return fmt.Errorf("image pins: %s pins %s, which signerd refuses at start: %w; rebuild it with make image KMS_KEYS=ARN,…", args[0], k, err)
		}
	}
	if !img.Pins.Pinned() {
		fmt.Fprintf(e.stderr, "signer: warning: %s pins no KMS key: its signerd accepts an identity sealed under any KMS key, so root on the parent can provision keys of its own choosing (make image KMS_KEYS=ARN,…)\n", args[0])
	}
	out := imagePinsJSON{ImageID: img.ID, Pins: img.Pins}
	if *measurements == "" {
		b, _ := json.MarshalIndent(out, "", "  ")
		_, err := e.stdout.Write(append(b, '\n'))
		return err
	}
	data, err := measurementsFile("image pins", *measurements).read(e, 1<<20)
	if err != nil {
		return err
	}
	merged, err := addPins(*measurements, data, out)
	if err != nil {
		return fmt.Errorf("image pins: %w", err)
	}
	_, err = e.stdout.Write(merged)
	return err
}

// addPins returns the measurements JSON object data with the members of
// p added before its closing brace, leaving nitro-cli's text as it was.
func addPins(name string, data []byte, p imagePinsJSON) ([]byte, error) {
	m, err := policy.ParseMeasurements(name, data)
	if err != nil {
		return nil, err
	}
	if m.Pins != nil || m.ImageID != "" {
		return nil, fmt.Errorf("measurements %s already record an image's pins", name)
	}
	// ParseMeasurements accepts progress lines before the object; keep
	// the object alone.
	start := bytes.IndexByte(data, '{')
	end := bytes.LastIndexByte(data, '}')
	if start < 0 || end < start {
		return nil, fmt.Errorf("measurements %s: no JSON object", name)
	}
	obj := bytes.TrimSpace(data[start:end])
	id, _ := json.Marshal(p.ImageID)
	pins, _ := json.MarshalIndent(p.Pins, "  ", "  ")
	var b bytes.Buffer
	b.Write(obj)
	if !bytes.HasSuffix(obj, []byte("{")) {
		b.WriteByte(',')
	}
	fmt.Fprintf(&b, "\n  \"ImageID\": %s,\n  \"Pins\": %s\n}\n", id, pins)
	if !json.Valid(b.Bytes()) {
		return nil, fmt.Errorf("measurements %s: adding the pins made invalid JSON", name)
	}
	return b.Bytes(), nil
}
