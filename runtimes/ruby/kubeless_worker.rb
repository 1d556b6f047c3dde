# Kubeless Ruby worker: loads the user's handler once and answers framed
# requests from the runtime host (kubeless-runtime) over a Unix socket.
#
# Standard library only. The wire format is described in
# docs/runtime-host.md. The host sets KUBELESS_WORKER_SOCKET,
# KUBELESS_INSTALL_VOLUME (code dir, also the working directory), MOD_NAME,
# FUNC_HANDLER, FUNC_TIMEOUT, FUNC_RUNTIME, FUNC_MEMORY_LIMIT.

require 'socket'
require 'stringio'

module KubelessWorker
  KIND_READY = 1
  KIND_LOAD_FAILED = 2
  KIND_REQUEST = 3
  KIND_RESPONSE = 4

  OUTCOME_OK = 0
  OUTCOME_HANDLER_ERROR = 1
  OUTCOME_BAD_REQUEST = 2

  HTML = 'text/html;charset=utf-8'.freeze

  # The request object in event[:extensions][:request]: the parts of a
  # Sinatra/Rack request that handlers commonly use.
  class Request
    attr_reader :request_method, :path_info, :query_string, :headers, :body, :raw_body

    def initialize(method, path, query, headers, body)
      @request_method = method
      @path_info = path
      @query_string = query
      @headers = headers
      @raw_body = body
      @body = StringIO.new(body)
    end

    alias path path_info
    alias method request_method

    def content_type
      @headers['content-type']
    end

    def get_header(name)
      @headers[name.to_s.downcase.sub(/\AHTTP_/i, '').tr('_', '-')]
    end

    def params
      @params ||= begin
        require 'uri'
        URI.decode_www_form(@query_string).to_h
      rescue ArgumentError
        {}
      end
    end

    # Rack-style environment: REQUEST_METHOD, PATH_INFO, QUERY_STRING,
    # CONTENT_TYPE, CONTENT_LENGTH and HTTP_* headers.
    def env
      @env ||= begin
        e = {
          'REQUEST_METHOD' => @request_method,
          'PATH_INFO' => @path_info,
          'QUERY_STRING' => @query_string,
          'CONTENT_LENGTH' => @raw_body.bytesize.to_s,
          'rack.input' => @body
        }
        e['CONTENT_TYPE'] = content_type if content_type
        @headers.each { |k, v| e["HTTP_#{k.upcase.tr('-', '_')}"] = v }
        e
      end
    end
  end

  module_function

  def blob(data)
    data = data.to_s.b
    [data.bytesize].pack('N') + data
  end

  def send_frame(sock, payload)
    sock.write([payload.bytesize].pack('N') + payload)
    sock.flush
  end

  def json_type?(content_type)
    return false if content_type.nil?

    content_type.split(';', 2).first.strip.downcase == 'application/json'
  end

  def decode_request(payload)
    pos = 1
    take = lambda do |n|
      raise 'truncated frame' if pos + n > payload.bytesize

      out = payload.byteslice(pos, n)
      pos += n
      out
    end
    u32 = -> { take.call(4).unpack1('N') }
    blob_of = -> { take.call(u32.call) }
    id = take.call(8).unpack1('Q>')
    method = blob_of.call.force_encoding('UTF-8')
    path = blob_of.call.force_encoding('UTF-8')
    query = blob_of.call.force_encoding('UTF-8')
    headers = {}
    u32.call.times do
      name = blob_of.call.force_encoding('UTF-8')
      value = blob_of.call.force_encoding('ISO-8859-1').encode('UTF-8')
      # Repeated headers fold into one value, as HTTP allows.
      headers[name] = headers.key?(name) ? "#{headers[name]}, #{value}" : value
    end
    body = blob_of.call
    [id, Request.new(method, path, query, headers, body)]
  end

  def encode_response(id, outcome, status = 200, headers = [], body = '', error = '')
    out = [KIND_RESPONSE, id, outcome, status, headers.length].pack('CQ>CnN')
    headers.each do |name, value|
      out << blob(name) << blob(value)
    end
    out << blob(body) << blob(error)
  end

  # Sinatra-style return values: a String body; [status, headers, body];
  # [status, body]; an Integer status. Beyond Kubeless: a Hash or Array of
  # non-status shape becomes JSON.
  def build_response(result)
    status = 200
    headers = {}
    body = result
    if result.is_a?(Array) && result.first.is_a?(Integer) && [2, 3].include?(result.length)
      status = result[0]
      headers = result[1] if result.length == 3
      body = result[-1]
    elsif result.is_a?(Integer)
      status = result
      body = ''
    end
    content_type = HTML
    body = case body
           when nil then ''
           when String then body
           when Hash, Array
             require 'json'
             content_type = 'application/json'
             JSON.generate(body)
           else
             # Rack bodies respond to each.
             body.respond_to?(:each) ? body.to_enum(:each).to_a.join : body.to_s
           end
    list = headers.map { |k, v| [k.to_s, v.to_s] }
    list << ['content-type', content_type] unless list.any? { |k, _| k.downcase == 'content-type' }
    [status, list, body]
  end

  def load(code_dir, mod_name, func_name)
    path = File.join(code_dir, "#{mod_name}.rb")
    return [nil, "module \"#{mod_name}\" not found in #{code_dir}"] unless File.file?(path)

    # Like Kubeless: the file is evaluated in an anonymous module and the
    # handler called as a module function.
    mod = Module.new
    begin
      mod.module_eval(File.read(path), path)
    rescue SyntaxError => e
      return [nil, "SyntaxError: #{e.message.lines.first.to_s.strip}"]
    rescue Exception => e # rubocop:disable Lint/RescueException -- top-level code may raise anything
      return [nil, describe(e)]
    end
    unless mod.method_defined?(func_name) || mod.private_method_defined?(func_name)
      return [nil, "module \"#{mod_name}\" has no function \"#{func_name}\""]
    end

    mod.send(:module_function, func_name.to_sym)
    [mod, nil]
  end

  def describe(error)
    where = (error.backtrace || []).first
    text = "#{error.class}: #{error.message}"
    text += " (#{File.basename(where.split(':in').first)})" if where
    text.tr("\n", ' ')
  end

  def invoke(mod, func_name, context, id, request)
    data = request.raw_body
    if !data.empty? && json_type?(request.content_type)
      require 'json'
      begin
        data = JSON.parse(data)
      rescue JSON::ParserError => e
        return encode_response(id, OUTCOME_BAD_REQUEST, 400, [], '', "Invalid JSON in request body: #{e.message}\n")
      end
    else
      utf8 = data.dup.force_encoding('UTF-8')
      data = utf8 if utf8.valid_encoding?
    end
    event = {
      data: data,
      'event-id': request.headers['event-id'],
      'event-type': request.headers['event-type'],
      'event-time': request.headers['event-time'],
      'event-namespace': request.headers['event-namespace'],
      extensions: { request: request }
    }
    begin
      result = mod.send(func_name, event, context)
      status, headers, body = build_response(result)
      encode_response(id, OUTCOME_OK, status, headers, body)
    rescue StandardError, ScriptError, SystemStackError => e
      warn 'Function returned an exception'
      warn "#{e.class}: #{e.message}"
      warn((e.backtrace || []).map { |l| "\t#{l}" }.join("\n"))
      $stderr.flush
      encode_response(id, OUTCOME_HANDLER_ERROR, 500)
    end
  end

  def main
    $stdout.sync = true
    $stderr.sync = true
    sock = UNIXSocket.new(ENV.fetch('KUBELESS_WORKER_SOCKET'))
    sock.binmode
    code_dir = ENV.fetch('KUBELESS_INSTALL_VOLUME', '/kubeless')
    mod_name = ENV.fetch('MOD_NAME')
    func_name = ENV.fetch('FUNC_HANDLER')
    $LOAD_PATH.unshift(code_dir)
    Dir.chdir(code_dir)

    mod, reason = load(code_dir, mod_name, func_name)
    if mod.nil?
      send_frame(sock, [KIND_LOAD_FAILED].pack('C') + blob(reason))
      exit!(3)
    end
    send_frame(sock, [KIND_READY].pack('C'))

    context = {
      'function-name': func_name,
      timeout: ENV.fetch('FUNC_TIMEOUT', '180'),
      runtime: ENV.fetch('FUNC_RUNTIME', ''),
      'memory-limit': ENV.fetch('FUNC_MEMORY_LIMIT', '')
    }

    # The socket is read on its own thread so the worker exits as soon as
    # the host goes away, even while a handler is still running.
    queue = Queue.new
    Thread.new do
      loop do
        head = sock.read(4)
        break if head.nil? || head.bytesize < 4

        n = head.unpack1('N')
        payload = n.zero? ? ''.b : sock.read(n)
        break if payload.nil? || payload.bytesize < n

        queue << payload
      end
    rescue IOError, SystemCallError
      nil
    ensure
      exit!(0)
    end

    loop do
      payload = queue.pop
      if payload.getbyte(0) != KIND_REQUEST
        warn "kubeless worker: unexpected message kind #{payload.getbyte(0)}"
        exit!(2)
      end
      id, request = decode_request(payload)
      send_frame(sock, invoke(mod, func_name, context, id, request))
    end
  end
end

KubelessWorker.main if $PROGRAM_NAME == __FILE__
