package codec

import (
	"reflect"
	"strings"
	"testing"
)

type point struct {
	X, Y int
	Name string
	Tags map[string]float64
}

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		in   any
		out  func() any
	}{
		{"int", 42, func() any { return new(int) }},
		{"string", "héllo", func() any { return new(string) }},
		{"float", 1.25, func() any { return new(float64) }},
		{"map", map[string]int{"a": 1, "b": 2}, func() any { return new(map[string]int) }},
		{"slice", []string{"x", "y"}, func() any { return new([]string) }},
		{"struct", point{1, 2, "p", map[string]float64{"CPU": 1}}, func() any { return new(point) }},
		{"bytes", []byte{0, 1, 2, 255}, func() any { return new([]byte) }},
		{"empty bytes", []byte{}, func() any { return new([]byte) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data, err := Encode(c.in)
			if err != nil {
				t.Fatal(err)
			}
			p := c.out()
			if err := Decode(data, p); err != nil {
				t.Fatal(err)
			}
			got := reflect.ValueOf(p).Elem().Interface()
			if !reflect.DeepEqual(got, c.in) {
				t.Fatalf("round trip: got %#v, want %#v", got, c.in)
			}
		})
	}
}

func TestBytesPassThrough(t *testing.T) {
	in := []byte("raw payload")
	data, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(data[1:]) != "raw payload" {
		t.Fatalf("bytes were re-encoded: %q", data)
	}
	var out []byte
	if err := Decode(data, &out); err != nil {
		t.Fatal(err)
	}
	if &out[0] != &data[1] {
		t.Fatal("decoded []byte should alias the wire buffer")
	}
	type blob []byte
	var b blob
	if err := Decode(data, &b); err != nil || string(b) != "raw payload" {
		t.Fatalf("named byte slice: %q %v", b, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	if err := Decode(nil, new(int)); err == nil {
		t.Fatal("empty input accepted")
	}
	data, _ := Encode([]byte("x"))
	if err := Decode(data, new(int)); err == nil || !strings.Contains(err.Error(), "[]byte") {
		t.Fatalf("bytes into int: %v", err)
	}
	data, _ = Encode("text")
	if err := Decode(data, new(int)); err == nil {
		t.Fatal("string decoded into int")
	}
	if err := Decode([]byte{9, 1}, new(int)); err == nil || !strings.Contains(err.Error(), "tag") {
		t.Fatalf("bad tag: %v", err)
	}
}
