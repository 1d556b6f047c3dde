def hello(event, context):
    print(event)
    return "hello world"
