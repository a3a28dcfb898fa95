package raycluster

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestTruncateNoteKeepsBothEnds: a note over the limit keeps its start
// and its end, where an API error gives its reason after quoting a long
// value, with "..." between, cut on rune boundaries.
func TestTruncateNoteKeepsBothEnds(t *testing.T) {
	apiErr := `Failed to create pod of group g (c-g-worker-*): Pod "c-g-worker-*" is invalid: metadata.labels: Invalid value: "` +
		strings.Repeat("a", 2000) + `": must be no more than 63 bytes`
	got := truncateNote(apiErr)
	if len(got) > noteLimit || !strings.HasPrefix(got, "Failed to create pod of group g") ||
		!strings.HasSuffix(got, `": must be no more than 63 bytes`) || !strings.Contains(got, "a...a") {
		t.Errorf("note of %d bytes: %q", len(got), got)
	}
	for _, n := range []int{noteLimit - 1, noteLimit, noteLimit + 1, noteLimit + 2, 3000, 3001} {
		for _, r := range []string{"é", "€", "😀"} { // 2, 3, 4 bytes
			s := strings.Repeat(r, n/len(r)+1)
			got := truncateNote(s)
			if len(s) <= noteLimit {
				if got != s {
					t.Errorf("a note of %d bytes was changed", len(s))
				}
				continue
			}
			if len(got) > noteLimit || len(got) < noteLimit-2*len(r) || !utf8.ValidString(got) ||
				!strings.HasPrefix(got, r) || !strings.HasSuffix(got, r) || strings.Count(got, "...") != 1 {
				t.Errorf("%d runes %q: note of %d bytes, valid UTF-8 %v: %q…%q", n/len(r)+1, r, len(got), utf8.ValidString(got), got[:8], got[len(got)-8:])
			}
		}
	}
	if s := strings.Repeat("x", noteLimit); truncateNote(s) != s {
		t.Error("a note of exactly the limit was cut")
	}
}
