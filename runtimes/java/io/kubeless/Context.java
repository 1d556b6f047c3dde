package io.kubeless;

/** The function's settings, as Kubeless's {@code io.kubeless.Context}. */
public class Context {
    public String functionName;
    public String timeout;
    public String runtime;
    public String memoryLimit;

    public Context(String functionName, String timeout, String runtime, String memoryLimit) {
        this.functionName = functionName;
        this.timeout = timeout;
        this.runtime = runtime;
        this.memoryLimit = memoryLimit;
    }
}
