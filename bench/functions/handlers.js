// The benchmark's Node.js handlers: served through the gateway, by the bare
// server (the ceiling) and behind the watchdog pattern, unchanged.
module.exports = {
  hello: (event, context) => 'hello world',
  // A JSON body arrives parsed; returning an object answers JSON.
  echo: (event, context) => event.data,
};
