// The benchmark's Java handlers (Kubeless conventions).
package io.kubeless;

public class Handlers {
    public String hello(io.kubeless.Event event, io.kubeless.Context context) {
        return "hello world";
    }

    public String echo(io.kubeless.Event event, io.kubeless.Context context) {
        return event.Data;
    }
}
