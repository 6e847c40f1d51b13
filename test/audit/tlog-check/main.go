// Checks the audit service's checkpoints and proofs with Go's golang.org/x/mod/sumdb/note and
// sumdb/tlog (the checksum database's implementation of signed notes and RFC 6962 trees), an
// implementation independent of the service's own. Reads a JSON request on stdin and prints
// one line per check; exits 1 at the first check that fails.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type request struct {
	VerifierKey string   `json:"verifier_key"`
	Checkpoints []string `json:"checkpoints"`
	Inclusion   []struct {
		Seq        int64    `json:"seq"`
		TreeSize   int64    `json:"tree_size"`
		Entry      string   `json:"entry"`
		Hashes     []string `json:"hashes"`
		Checkpoint string   `json:"checkpoint"`
	} `json:"inclusion"`
	Consistency []struct {
		First      int64    `json:"first"`
		Second     int64    `json:"second"`
		Hashes     []string `json:"hashes"`
		FirstNote  string   `json:"first_checkpoint"`
		SecondNote string   `json:"second_checkpoint"`
	} `json:"consistency"`
}

type checkpoint struct {
	size int64
	root tlog.Hash
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func hash(s string) tlog.Hash {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		fail("bad hash %q", s)
	}
	var h tlog.Hash
	copy(h[:], b)
	return h
}

func hashes(list []string) []tlog.Hash {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		out[i] = hash(s)
	}
	return out
}

func open(v note.Verifier, text string) checkpoint {
	n, err := note.Open([]byte(text), note.VerifierList(v))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		fail("checkpoint has %d lines", len(lines))
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	return checkpoint{size, hash(lines[2])}
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fail("request: %v", err)
	}
	v, err := note.NewVerifier(req.VerifierKey)
	if err != nil {
		fail("verifier key: %v", err)
	}
	for _, c := range req.Checkpoints {
		cp := open(v, c)
		fmt.Printf("ok checkpoint %d\n", cp.size)
	}
	for _, p := range req.Inclusion {
		cp := open(v, p.Checkpoint)
		if cp.size != p.TreeSize {
			fail("inclusion %d: checkpoint size %d, proof for %d", p.Seq, cp.size, p.TreeSize)
		}
		leaf := tlog.RecordHash([]byte(p.Entry))
		if err := tlog.CheckRecord(hashes(p.Hashes), p.TreeSize, cp.root, p.Seq, leaf); err != nil {
			fail("inclusion %d in %d: %v", p.Seq, p.TreeSize, err)
		}
		fmt.Printf("ok inclusion %d %d\n", p.Seq, p.TreeSize)
	}
	for _, p := range req.Consistency {
		a, b := open(v, p.FirstNote), open(v, p.SecondNote)
		if a.size != p.First || b.size != p.Second {
			fail("consistency: checkpoint sizes %d, %d for a proof of %d, %d", a.size, b.size, p.First, p.Second)
		}
		if err := tlog.CheckTree(hashes(p.Hashes), b.size, b.root, a.size, a.root); err != nil {
			fail("consistency %d to %d: %v", p.First, p.Second, err)
		}
		fmt.Printf("ok consistency %d %d\n", p.First, p.Second)
	}
}
