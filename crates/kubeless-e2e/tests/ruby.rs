//! Ruby functions end to end: Kubeless handlers (`def handler(event,
//! context)` with symbol keys), a Gemfile resolved by bundler from gems
//! installed on the machine (RubyGems is not reachable here), the host
//! contract, legacy runtime ids, and a clear error for a gem that cannot be
//! installed.

mod common;

use common::Server;
use common::contract::{BUILD, Contract, check_contract, deploy, deploy_contract, require_tool};

const HANDLERS: &str = r#"
def hello(event, context)
  'hello world'
end

def echo(event, context)
  puts "event-id=#{event[:'event-id']} event-type=#{event[:'event-type']} event-time=#{event[:'event-time']} event-namespace=#{event[:'event-namespace']}"
  event[:data]
end

def slow(event, context)
  sleep 30
  'too late'
end

def fail(event, context)
  raise ArgumentError, 'boom from the handler'
end

def created(event, context)
  [201, { 'X-Made-By' => 'ruby' }, "created #{event[:data]}"]
end
"#;

const WEBRICK_FN: &str = "require 'webrick'\n\ndef handler(event, context)\n  \"webrick #{WEBrick::VERSION.split('.').first}\"\nend\n";

#[test]
fn ruby_functions_end_to_end() {
    require_tool("ruby");
    require_tool("bundle");
    let s = Server::start();
    let r = s.ok(&["get-server-config"]);
    let config = format!("{}{}", r.stdout, r.stderr);
    assert!(
        config.contains("ruby3.1") && config.contains("ruby2.6"),
        "{config}"
    );

    let f = s.file("handlers.rb", HANDLERS);
    // Legacy Kubeless runtime ids (ruby2.6, ruby2.5) resolve to the installed toolchain.
    let c = Contract {
        lang: "ruby",
        file: &f,
        handlers: [
            "handlers.hello",
            "handlers.echo",
            "handlers.slow",
            "handlers.fail",
            "handlers.created",
        ],
        runtimes: ["ruby3.1", "ruby2.6", "ruby3.1", "ruby2.5", "ruby3.1"],
        created_body: "created x",
    };
    deploy_contract(&s, &c);
    // webrick is a gem Debian ships (ruby-webrick), not part of Ruby 3.1.
    let web = s.file("web.rb", WEBRICK_FN);
    let gemfile = s.file("Gemfile", "source 'https://rubygems.org'\ngem 'webrick'\n");
    deploy(
        &s,
        "webrick",
        "ruby3.1",
        "web.handler",
        &web,
        &["--dependencies", &gemfile],
    );
    let missing = s.file(
        "missing/Gemfile",
        "source 'https://rubygems.org'\ngem 'no_such_gem_for_kubeless'\n",
    );
    deploy(
        &s,
        "missing",
        "ruby3.1",
        "web.handler",
        &web,
        &["--dependencies", &missing],
    );

    check_contract(&s, &c);

    s.wait_phase("webrick", "Ready", BUILD);
    assert_eq!(s.ok(&["function", "call", "webrick"]).stdout, "webrick 1\n");

    let st = s.wait_phase("missing", "Failed", BUILD);
    let reason = st["reason"].as_str().unwrap_or("");
    assert!(reason.contains("no_such_gem_for_kubeless"), "{st}");
    assert!(reason.contains("RubyGems is not reachable"), "{st}");
}
