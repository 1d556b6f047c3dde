// The benchmark's Go handlers (Kubeless conventions, unchanged import).
package kubeless

import "github.com/kubeless/kubeless/pkg/functions"

func Hello(event functions.Event, context functions.Context) (string, error) {
	return "hello world", nil
}

func Echo(event functions.Event, context functions.Context) (string, error) {
	return event.Data, nil
}
