package diddoc

import (
	"crypto/ed25519"
	"errors"
	"testing"

	"filippo.io/edwards25519"
	"github.com/hyperledger/aries-framework-go/pkg/vdr/fingerprint"
	"github.com/mr-tron/base58"
)

func invalidPointKey(t *testing.T) []byte {
	t.Helper()
	for i := 2; i < 1000; i++ {
		b := make([]byte, 32)
		b[0] = byte(i)
		b[1] = byte(i >> 8)
		if _, err := new(edwards25519.Point).SetBytes(b); err != nil {
			return b
		}
	}
	t.Fatal("no invalid point found")
	return nil
}

func TestNormalizeVerkeyTable(t *testing.T) {
	const vk = "6TnL5DaegXgdknhLsg9BqYvgvzSHA6nBjsRoD36XBTV5"
	dk, err := DIDKeyFromVerkey(vk)
	if err != nil {
		t.Fatal(err)
	}
	fp := dk[len("did:key:"):]
	x25519DIDKey := "did:key:z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc" // an X25519 did:key
	badPoint := base58.Encode(invalidPointKey(t))
	cases := []struct {
		name, in, want string
		wantErr        error
	}{
		{"base58", vk, vk, nil},
		{"base58 with spaces", "  " + vk + "\n", vk, nil},
		{"did:key", dk, vk, nil},
		{"did:key with fragment", dk + "#" + fp, vk, nil},
		{"did:key with other fragment (ignored like Credo)", dk + "#key-1", vk, nil},
		{"bare fingerprint", fp, vk, nil},
		{"real kid from Credo 0.5", "did:key:z6Mkjv3NfTq625B6sHY3ZF72geUgkZi8Zz2YRtLj3K4Y6gGT", vk, nil},
		{"empty", "", "", ErrInvalidKey},
		{"spaces", "   ", "", ErrInvalidKey},
		{"not base58", "0OIl" + vk[4:], "", ErrInvalidKey},
		{"31 bytes", base58.Encode(make([]byte, 31)), "", ErrInvalidKey},
		{"33 bytes", base58.Encode(append([]byte{1}, make([]byte, 32)...)), "", ErrInvalidKey},
		{"not on curve", badPoint, "", ErrInvalidKey},
		{"X25519 did:key", x25519DIDKey, "", ErrInvalidKey},
		{"did:key without multibase z", "did:key:" + vk, "", ErrInvalidKey},
		{"did:key empty", "did:key:", "", ErrInvalidKey},
		{"did:key truncated", dk[:len(dk)-3], "", ErrInvalidKey},
		{"other DID method", "did:sov:" + vk, "", ErrInvalidKey},
		{"huge", string(make([]byte, 5000)), "", ErrInvalidKey},
		{"z only", "z", "", ErrInvalidKey},
		{"unicode", "ключ", "", ErrInvalidKey},
	}
	for _, c := range cases {
		for _, f := range []struct {
			name      string
			normalize func(string) (string, error)
		}{{"NormalizeVerkey", NormalizeVerkey}, {"RouteVerkey", RouteVerkey}} {
			t.Run(f.name+"/"+c.name, func(t *testing.T) {
				want, wantErr := c.want, c.wantErr
				if f.name == "RouteVerkey" && c.name == "not on curve" {
					want, wantErr = badPoint, nil // a lookup finds nothing for it
				}
				got, err := f.normalize(c.in)
				if wantErr != nil {
					if !errors.Is(err, wantErr) {
						t.Fatalf("%s(%q) = %q, %v; want error %v", f.name, c.in, got, err, wantErr)
					}
					return
				}
				if err != nil || got != want {
					t.Fatalf("%s(%q) = %q, %v; want %q", f.name, c.in, got, err, want)
				}
			})
		}
	}
}

func TestDIDKeyConversionsTable(t *testing.T) {
	cases := []struct{ verkey, didKey string }{
		// From the wire examples: keylist-update did:key vs the did_doc~attach verkey.
		{"6TnL5DaegXgdknhLsg9BqYvgvzSHA6nBjsRoD36XBTV5", "did:key:z6Mkjv3NfTq625B6sHY3ZF72geUgkZi8Zz2YRtLj3K4Y6gGT"},
		{"6LWB73yHnNwfHjPEUr9kjUk9ruv5wHwRNQHzXgK64FQb", "did:key:z6MkjnmDhJDj7vS8QEDwAR7baaJ9gVBwMBBn4RCvMxH6yUBy"},
	}
	for _, c := range cases {
		got, err := DIDKeyFromVerkey(c.verkey)
		if err != nil || got != c.didKey {
			t.Errorf("DIDKeyFromVerkey(%s) = %s, %v; want %s", c.verkey, got, err, c.didKey)
		}
		back, err := VerkeyFromDIDKey(c.didKey)
		if err != nil || back != c.verkey {
			t.Errorf("VerkeyFromDIDKey(%s) = %s, %v", c.didKey, back, err)
		}
		back, err = VerkeyFromDIDKey(c.didKey + "#" + c.didKey[8:])
		if err != nil || back != c.verkey {
			t.Errorf("VerkeyFromDIDKey(with fragment) = %s, %v", back, err)
		}
		fp, err := Fingerprint(c.verkey)
		if err != nil || "did:key:"+fp != c.didKey {
			t.Errorf("Fingerprint = %s, %v", fp, err)
		}
	}
	for _, bad := range []string{"", "did:key:", "did:key:z", "did:key:zzzz", "did:peer:0z6Mkjv3NfTq625B6sHY3ZF72geUgkZi8Zz2YRtLj3K4Y6gGT",
		"6TnL5DaegXgdknhLsg9BqYvgvzSHA6nBjsRoD36XBTV5", "did:key:z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc", "did:key:z6Mk\x00"} {
		if _, err := VerkeyFromDIDKey(bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("VerkeyFromDIDKey(%q) err = %v", bad, err)
		}
	}
	for _, bad := range []string{"", "abc", "did:key:z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc", base58.Encode(make([]byte, 16))} {
		if _, err := DIDKeyFromVerkey(bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("DIDKeyFromVerkey(%q) err = %v", bad, err)
		}
	}
}

// Our did:key encoding agrees with aries-framework-go's.
func TestDIDKeyMatchesAries(t *testing.T) {
	for i := 0; i < 50; i++ {
		pub := pubOf(seedKey(string(rune('a' + i))))
		ariesDID, _ := fingerprint.CreateDIDKey(pub)
		ours, err := DIDKeyFromVerkey(base58.Encode(pub))
		if err != nil || ours != ariesDID {
			t.Fatalf("ours %s aries %s (%v)", ours, ariesDID, err)
		}
		raw, err := fingerprint.PubKeyFromDIDKey(ours)
		if err != nil || !ed25519.PublicKey(raw).Equal(pub) {
			t.Fatalf("aries decode: %v", err)
		}
	}
}

func TestDecodeBase64Any(t *testing.T) {
	want := []byte{0xfb, 0xff, 0xfe, 'a'}
	for _, in := range []string{"+//+YQ==", "+//+YQ", "-__-YQ==", "-__-YQ", " +//+\nYQ== "} {
		got, err := decodeBase64Any(in)
		if err != nil || string(got) != string(want) {
			t.Errorf("decodeBase64Any(%q) = %x, %v", in, got, err)
		}
	}
	for _, in := range []string{"+_", "@@@@", "a"} {
		if _, err := decodeBase64Any(in); err == nil {
			t.Errorf("decodeBase64Any(%q) accepted", in)
		}
	}
}

func TestX25519MatchesCredo(t *testing.T) {
	// From the 0.5 wire example: authentication key and its keyAgreement key.
	pub, _ := base58.Decode("6TnL5DaegXgdknhLsg9BqYvgvzSHA6nBjsRoD36XBTV5")
	x, err := x25519FromEd25519(pub)
	if err != nil {
		t.Fatal(err)
	}
	if got := base58.Encode(x); got != "4RrtYZv3T4mSE3g31TbMWXJz665mt44wKSNzW1XDzc3S" {
		t.Fatalf("X25519 %s", got)
	}
}
