package raycluster

import (
	"fmt"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/runtime"
)

// noteLimit is the longest Event note the API server accepts
// (events.k8s.io/v1: "can have at most 1024 characters").
const noteLimit = 1024

// NewRecorder wraps rec so that no note is too long for the API server: a
// longer one keeps its start and its end with "..." between, where the
// API server would refuse it and the Event would be lost. The end stays
// because that is where an API error gives its reason, after quoting the
// (long) value it refused. manager.New gives every controller a recorder
// wrapped so.
func NewRecorder(rec EventRecorder) EventRecorder { return truncatingRecorder{rec} }

type truncatingRecorder struct{ rec EventRecorder }

func (t truncatingRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	t.rec.Eventf(regarding, related, eventtype, reason, action, "%s", truncateNote(fmt.Sprintf(note, args...)))
}

// truncateNote cuts s to at most noteLimit bytes by dropping its middle
// for "...", on rune boundaries: about half the room goes to the start,
// the rest to the end.
func truncateNote(s string) string {
	if len(s) <= noteLimit {
		return s
	}
	room := noteLimit - len("...")
	head := room / 2
	for head > 0 && !utf8.RuneStart(s[head]) {
		head--
	}
	tail := len(s) - (room - head)
	for tail < len(s) && !utf8.RuneStart(s[tail]) {
		tail++
	}
	return s[:head] + "..." + s[tail:]
}
