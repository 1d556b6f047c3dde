def hello(event, context):
    print(event)
    data = event["data"]
    if isinstance(data, dict) and "name" in data:
        return "hello %s" % data["name"]
    return "hello world"
