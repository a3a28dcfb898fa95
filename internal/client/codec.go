package client

import (
	"encoding/binary"
	"errors"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/proto/clientpb"
)

// frameCodec is the gRPC codec of the client protocol. Frames travel as
// their protobuf encoding without the bulk bytes of Put and Data
// messages, followed by those bytes, so a value's chunks are neither
// copied into a protobuf encoding nor copied out of one. Other messages
// are plain protobuf.
//
//	uvarint len(header) | header (Frame, bulk fields empty) |
//	uvarint n | n × uvarint len(bulk i) | bulk 1 … bulk n
//
// Bulk i belongs to the i-th Put or Data message of the frame.
type frameCodec struct{}

var protoCodec = encoding.GetCodecV2("proto")

func (frameCodec) Name() string { return "goray-client" }

func (frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*clientpb.Frame)
	if !ok {
		return protoCodec.Marshal(v)
	}
	hdr := f
	for _, m := range f.Msgs {
		if hasBulk(m) {
			// A copy of the frame without the bulk bytes: the original
			// stays intact, to be sent again after a reconnect.
			hdr = &clientpb.Frame{Seq: f.Seq, Ack: f.Ack, Hello: f.Hello, Welcome: f.Welcome, Msgs: make([]*clientpb.Msg, len(f.Msgs))}
			break
		}
	}
	var bulk [][]byte
	for i, m := range f.Msgs {
		if hdr == f {
			break // no bulk bytes: the frame is its own header
		}
		switch b := m.Body.(type) {
		case *clientpb.Msg_Put:
			p := b.Put
			bulk = append(bulk, p.Data)
			m = &clientpb.Msg{Body: &clientpb.Msg_Put{Put: &clientpb.Put{Req: p.Req, N: p.N, Size: p.Size, Last: p.Last, Contained: p.Contained}}}
		case *clientpb.Msg_Data:
			d := b.Data
			bulk = append(bulk, d.Data)
			m = &clientpb.Msg{Body: &clientpb.Msg_Data{Data: &clientpb.Data{Req: d.Req, Size: d.Size, AppError: d.AppError, Last: d.Last}}}
		}
		hdr.Msgs[i] = m
	}
	h, err := proto.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	prefix := make([]byte, 0, len(h)+16+10*len(bulk))
	prefix = binary.AppendUvarint(prefix, uint64(len(h)))
	prefix = append(prefix, h...)
	prefix = binary.AppendUvarint(prefix, uint64(len(bulk)))
	for _, b := range bulk {
		prefix = binary.AppendUvarint(prefix, uint64(len(b)))
	}
	out := make(mem.BufferSlice, 0, 1+len(bulk))
	out = append(out, mem.SliceBuffer(prefix))
	for _, b := range bulk {
		if len(b) > 0 {
			out = append(out, mem.SliceBuffer(b))
		}
	}
	return out, nil
}

func hasBulk(m *clientpb.Msg) bool {
	switch m.Body.(type) {
	case *clientpb.Msg_Put, *clientpb.Msg_Data:
		return true
	}
	return false
}

var errBadFrame = errors.New("client: malformed frame")

func uvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, errBadFrame
	}
	return v, b[n:], nil
}

func (frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*clientpb.Frame)
	if !ok {
		return protoCodec.Unmarshal(data, v)
	}
	buf := data.Materialize() // ours: the bulk fields alias it
	hl, buf, err := uvarint(buf)
	if err != nil || hl > uint64(len(buf)) {
		return errBadFrame
	}
	if err := proto.Unmarshal(buf[:hl], f); err != nil {
		return err
	}
	buf = buf[hl:]
	n, buf, err := uvarint(buf)
	if err != nil || n > uint64(len(buf)) {
		return errBadFrame
	}
	lens := make([]uint64, n)
	for i := range lens {
		if lens[i], buf, err = uvarint(buf); err != nil {
			return err
		}
	}
	next := 0
	take := func() ([]byte, error) {
		if next >= len(lens) || lens[next] > uint64(len(buf)) {
			return nil, errBadFrame
		}
		b := buf[:lens[next]:lens[next]]
		buf = buf[lens[next]:]
		next++
		return b, nil
	}
	for _, m := range f.Msgs {
		switch b := m.Body.(type) {
		case *clientpb.Msg_Put:
			if b.Put.Data, err = take(); err != nil {
				return err
			}
		case *clientpb.Msg_Data:
			if b.Data.Data, err = take(); err != nil {
				return err
			}
		}
	}
	if next != len(lens) || len(buf) != 0 {
		return errBadFrame
	}
	return nil
}
