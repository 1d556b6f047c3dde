# The benchmark's Python handlers: served through the gateway, by the bare
# server (the ceiling) and by the Kubeless runtime pattern, unchanged.


def hello(event, context):
    return "hello world"


def echo(event, context):
    # A JSON body arrives parsed; returning a dict answers JSON.
    return event["data"]
