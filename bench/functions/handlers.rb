# The benchmark's Ruby handlers (Kubeless conventions).
require 'json'

def hello(event, context)
  'hello world'
end

def echo(event, context)
  JSON.generate(event[:data] || event['data'])
end
