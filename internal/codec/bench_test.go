package codec

import "testing"

// BenchmarkRoundTrip measures encoding and decoding the values a small
// task passes: a struct, and a []byte that passes through.
func BenchmarkRoundTrip(b *testing.B) {
	b.Run("struct", func(b *testing.B) {
		in := point{X: 1, Y: 2, Name: "p", Tags: map[string]float64{"CPU": 1}}
		for b.Loop() {
			data, err := Encode(in)
			if err != nil {
				b.Fatal(err)
			}
			var out point
			if err := Decode(data, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bytes-64KiB", func(b *testing.B) {
		in := make([]byte, 64<<10)
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			data, _ := Encode(in)
			var out []byte
			if err := Decode(data, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
