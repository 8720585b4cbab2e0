package auth

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseKeys(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keys")
	if err := os.WriteFile(file, []byte("# local\n\nfilekey-0123456789abcdef\nops:opskey-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := ParseKeys("alice:alicekey-0123456789, anonkey-0123456789abcdef", file)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.IDs()) != 4 {
		t.Fatalf("ids %v", k.IDs())
	}
	for key, want := range map[string]string{"alicekey-0123456789": "alice", "opskey-0123456789abcdef": "ops"} {
		if p, ok := k.Authenticate(key); !ok || p.ID != want || p.Scopes != DefaultScopes || p.Bound() {
			t.Errorf("%s → %v %v", key, p, ok)
		}
	}
	if p, ok := k.Authenticate("filekey-0123456789abcdef"); !ok || !strings.HasPrefix(p.ID, "key-") {
		t.Errorf("anonymous key principal %v", p)
	}
	for _, bad := range []string{"alicekey-012345678", "", "alice:alicekey-0123456789"} {
		if _, ok := k.Authenticate(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, s := range append(k.IDs(), k.Describe()...) {
		if strings.Contains(s, "0123456789") {
			t.Errorf("principal %q reveals a key", s)
		}
	}
	if _, err := ParseKeys("", ""); err == nil {
		t.Error("no keys accepted")
	}
	if _, err := ParseKeys("short", ""); err == nil {
		t.Error("short key accepted")
	}
	if _, err := ParseKeys("", filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

// Scopes and user bindings, in API_KEYS (where scopes continue after the
// list's commas) and in the key file.
func TestKeyScopesAndUsers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keys")
	if err := os.WriteFile(file, []byte("web:webkey-0123456789abcd:read,write:user=u1|u2\nops:opskey-0123456789abcd:admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := ParseKeys("svc:svckey-0123456789abcd:read,write, ro:rokey-0123456789abcdef:read,"+
		"shop:shopkey-0123456789abcd:read,write:user=alice, plainkey-0123456789abcd", file)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key    string
		id     string
		scopes Scopes
		users  []string
	}{
		{"svckey-0123456789abcd", "svc", Read | Write, nil},
		{"rokey-0123456789abcdef", "ro", Read, nil},
		{"shopkey-0123456789abcd", "shop", Read | Write, []string{"alice"}},
		{"webkey-0123456789abcd", "web", Read | Write, []string{"u1", "u2"}},
		{"opskey-0123456789abcd", "ops", Admin, nil},
		{"plainkey-0123456789abcd", "", DefaultScopes, nil},
	} {
		p, ok := k.Authenticate(tc.key)
		if !ok || (tc.id != "" && p.ID != tc.id) || p.Scopes != tc.scopes || !slices.Equal(p.ActsFor(), tc.users) {
			t.Errorf("%s → %v %v, want %s %s %v", tc.key, p, ok, tc.id, tc.scopes, tc.users)
		}
	}
	if p, _ := k.Authenticate("rokey-0123456789abcdef"); p.Scopes.Has(Write) || !p.Scopes.Has(Read) {
		t.Errorf("read-only key: %v", p)
	}
	if p, _ := k.Authenticate("opskey-0123456789abcd"); !p.Scopes.Has(Read|Write) || !p.MayActFor("anyone") {
		t.Errorf("admin key: %v", p)
	}
	if p, _ := k.Authenticate("webkey-0123456789abcd"); !p.MayActFor("u2") || p.MayActFor("u3") || !p.Bound() {
		t.Errorf("bound key: %v", p)
	}
}

// Every malformed item is a start-up error naming where it is and what
// is wrong, and never quoting the key (nor any field, which may be a key
// in the wrong place).
func TestKeyConfigErrorsNameTheLineNeverTheKey(t *testing.T) {
	const secret = "s3cr3t-0123456789abcdef"
	for _, tc := range []struct{ list, want string }{
		{"svc:" + secret + ":reed", "API_KEYS item 1: scope 1 of 1"},
		{"a:k-0123456789abcdef0, svc:" + secret + ":read,wirte", "API_KEYS item 2: scope 2 of 2"},
		{"svc:" + secret + ":", "API_KEYS item 1: scope 1 of 1"},
		{"svc:" + secret + ":admin:user=u1", "cannot also be bound"},
		{"svc:" + secret + ":read:users=u1", "user=U1|U2"},
		{"svc:" + secret + ":read:user=", "each user= id"},
		{"svc:" + secret + ":read:user=a b", "each user= id"},
		{"svc:" + secret + ":read:user=u1:x", "too many"},
		{"bad id:" + secret, "the id must be"},
		{":" + secret, "the id must be"},
		{secret + ":svc", "must be 16 to 1024"},
		{"read,svc:" + secret, "a scope list before any key"},
		{"a:" + secret + ",b:" + secret, "API_KEYS item 2: the same key as API_KEYS item 1"},
	} {
		_, err := ParseKeys(tc.list, "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.list, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%q: error quotes the key: %v", tc.list, err)
		}
	}
	file := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(file, []byte("ok:k-0123456789abcdef0\n\nsvc:"+secret+":root\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ParseKeys("", file)
	if err == nil || !strings.Contains(err.Error(), file+" line 3: scope 1 of 1") || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("file error %v", err)
	}
	// All problems at once.
	_, err = ParseKeys("a:"+secret+":x, b:short", "")
	if err == nil || !strings.Contains(err.Error(), "item 1") || !strings.Contains(err.Error(), "item 2") {
		t.Errorf("errors not reported together: %v", err)
	}
}
