// Package functions holds the types Kubeless Go functions receive, with the
// names and fields of github.com/kubeless/kubeless/pkg/functions, so that
// handlers written for Kubeless build unchanged:
//
//	func Handler(event functions.Event, context functions.Context) (string, error)
package functions

import (
	"context"
	"net/http"
)

// Extension carries the native request, a response writer the handler may
// use to set the status code and headers (or write body bytes before the
// returned string), and a context cancelled when FUNC_TIMEOUT expires.
type Extension struct {
	Request  *http.Request
	Response http.ResponseWriter
	Context  context.Context
}

// Event is one invocation: the raw request body and the event headers.
type Event struct {
	Data           string
	EventID        string
	EventType      string
	EventTime      string
	EventNamespace string
	Extensions     Extension
}

// Context describes the function (FUNC_HANDLER, FUNC_TIMEOUT, FUNC_RUNTIME,
// FUNC_MEMORY_LIMIT).
type Context struct {
	FunctionName string
	Timeout      string
	Runtime      string
	MemoryLimit  string
}
