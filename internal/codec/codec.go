// Package codec encodes values that cross the wire: MessagePack by default,
// with []byte passed through untouched (as Ray passes bytes through pickle5
// out-of-band buffers). Every encoded value starts with a one-byte tag.
package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

const (
	tagMsgpack byte = 0
	tagBytes   byte = 1
)

var bytesType = reflect.TypeOf([]byte(nil))

// Encode returns the wire form of v. Custom encoders of v's parts see no
// tracker (Track returns false).
func Encode(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		out := make([]byte, 1+len(b))
		out[0] = tagBytes
		copy(out[1:], b)
		return out, nil
	}
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec: encode %T: %w", v, err)
	}
	out := make([]byte, 1+len(b))
	out[0] = tagMsgpack
	copy(out[1:], b)
	return out, nil
}

// tracking maps an encoder in use by EncodeTracked to what custom
// encoders report through Track.
var tracking sync.Map // *msgpack.Encoder → *[]any

// EncodeTracked is Encode that also returns what the custom encoders of
// v's parts reported with Track (the refs a value contains).
func EncodeTracked(v any) (data []byte, tracked []any, err error) {
	if b, ok := v.([]byte); ok {
		out := make([]byte, 1+len(b))
		out[0] = tagBytes
		copy(out[1:], b)
		return out, nil, nil
	}
	var buf bytes.Buffer
	buf.WriteByte(tagMsgpack)
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	var seen []any
	tracking.Store(enc, &seen)
	defer tracking.Delete(enc)
	if err := enc.Encode(v); err != nil {
		return nil, nil, fmt.Errorf("codec: encode %T: %w", v, err)
	}
	return buf.Bytes(), seen, nil
}

// Track reports x from a custom encoder. It returns false when the value
// is not being encoded by EncodeTracked (nobody collects it).
func Track(enc *msgpack.Encoder, x any) bool {
	p, ok := tracking.Load(enc)
	if ok {
		list := p.(*[]any)
		*list = append(*list, x)
	}
	return ok
}

// Decode stores the value encoded in data into ptr, which must be a
// non-nil pointer. A []byte target aliases data (no copy).
func Decode(data []byte, ptr any) error {
	if len(data) == 0 {
		return errors.New("codec: empty value")
	}
	switch data[0] {
	case tagBytes:
		switch p := ptr.(type) {
		case *[]byte:
			*p = data[1:]
			return nil
		case *any:
			*p = data[1:]
			return nil
		}
		rv := reflect.ValueOf(ptr)
		if rv.Kind() == reflect.Pointer && !rv.IsNil() && rv.Elem().Type().ConvertibleTo(bytesType) && rv.Elem().Kind() == reflect.Slice {
			rv.Elem().Set(reflect.ValueOf(data[1:]).Convert(rv.Elem().Type()))
			return nil
		}
		return fmt.Errorf("codec: value is []byte, cannot decode into %T", ptr)
	case tagMsgpack:
		if err := msgpack.Unmarshal(data[1:], ptr); err != nil {
			return fmt.Errorf("codec: decode into %T: %w", ptr, err)
		}
		return nil
	default:
		return fmt.Errorf("codec: unknown value tag %d", data[0])
	}
}

// Sized encodes v for a destination the caller allocates (a value put
// straight into the object store): it returns the encoded size, a write
// function that writes the encoding at offset 0 of w, and what v's parts
// reported with Track. A []byte is written from the caller's slice, with
// no intermediate buffer.
func Sized(v any) (size int, write func(w io.WriterAt) error, tracked []any, err error) {
	if b, ok := v.([]byte); ok {
		return 1 + len(b), func(w io.WriterAt) error {
			if _, err := w.WriteAt([]byte{tagBytes}, 0); err != nil {
				return err
			}
			_, err := w.WriteAt(b, 1)
			return err
		}, nil, nil
	}
	enc, tracked, err := EncodeTracked(v)
	if err != nil {
		return 0, nil, nil, err
	}
	return len(enc), func(w io.WriterAt) error {
		_, err := w.WriteAt(enc, 0)
		return err
	}, tracked, nil
}

// Buffer is an io.WriterAt over a byte slice of the final size.
type Buffer []byte

// WriteAt copies p to offset off; writes past the end fail.
func (b Buffer) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(b)) {
		return 0, errors.New("codec: write past the end of the buffer")
	}
	return copy(b[off:], p), nil
}
