package auth

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	bearerPrefix = "Bearer "
	missingMsg   = "auth: missing token; set GORAY_AUTH_TOKEN (or RAY_AUTH_TOKEN) to the head node's token from ~/.goray/auth_token"
	invalidMsg   = "auth: invalid token"
)

// check compares the value of an Authorization header with the token in
// constant time. It reports whether a value was present and whether it matched.
func check(header, token string) (present, valid bool) {
	if header == "" {
		return false, false
	}
	got, ok := strings.CutPrefix(header, bearerPrefix)
	return true, ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

func authorize(ctx context.Context, token string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	var header string
	if v := md.Get("authorization"); len(v) > 0 {
		header = v[0]
	}
	switch present, valid := check(header, token); {
	case !present:
		return status.Error(codes.Unauthenticated, missingMsg)
	case !valid:
		return status.Error(codes.PermissionDenied, invalidMsg)
	}
	return nil
}

// ServerOptions returns interceptors (unary and stream) that require metadata
// "authorization: Bearer <token>", as Ray's servers do. A missing token fails
// with codes.Unauthenticated, a wrong one with codes.PermissionDenied. An empty
// token disables auth: no options are returned and every call is let through.
func ServerOptions(token string) []grpc.ServerOption {
	if token == "" {
		return nil
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := authorize(ctx, token); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := authorize(ss.Context(), token); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

// bearer is a credentials.PerRPCCredentials that sends the token on every RPC.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": bearerPrefix + string(b)}, nil
}

// RequireTransportSecurity is false: like Ray, the token may travel over
// plaintext connections (use TLS or a private network).
func (bearer) RequireTransportSecurity() bool { return false }

// DialOptions returns a dial option attaching "authorization: Bearer <token>"
// to every RPC, also over insecure transport. An empty token returns nil.
func DialOptions(token string) []grpc.DialOption {
	if token == "" {
		return nil
	}
	return []grpc.DialOption{grpc.WithPerRPCCredentials(bearer(token))}
}

// Middleware requires the token on every HTTP request. As in Ray's dashboard
// middleware it is read from, in order, the Authorization header, the
// X-Ray-Authorization header (both "Bearer <token>") or the cookie
// ray-authentication-token. Missing gives 401, wrong gives 403, each with a
// plain-text body naming the problem. An empty token returns next unchanged.
func Middleware(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header := r.Header.Get("Authorization")
		if header == "" {
			header = r.Header.Get("X-Ray-Authorization")
		}
		if c, err := r.Cookie("ray-authentication-token"); header == "" && err == nil && c.Value != "" {
			header = bearerPrefix + c.Value
		}
		switch present, valid := check(header, token); {
		case !present:
			http.Error(w, "Unauthorized: Missing authentication token", http.StatusUnauthorized)
		case !valid:
			http.Error(w, "Forbidden: Invalid authentication token", http.StatusForbidden)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

var _ credentials.PerRPCCredentials = bearer("")
