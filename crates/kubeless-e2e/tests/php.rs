//! PHP functions end to end: Kubeless handlers (a function taking
//! `$event`/`$context` objects), a composer.json whose package is vendored
//! in the function archive (Packagist is not reachable here), the host
//! contract, legacy runtime ids, and a clear error for a package composer
//! cannot get.

mod common;

use std::io::Write;

use common::Server;
use common::contract::{
    BUILD, Contract, check_contract, deploy, deploy_contract, gateway_post, require_tool,
};

const HANDLERS: &str = r#"<?php
function hello($event, $context) {
    return "hello world";
}

function echo_event($event, $context) {
    echo "event-id={$event->{'event-id'}} event-type={$event->{'event-type'}} event-time={$event->{'event-time'}} event-namespace={$event->{'event-namespace'}}\n";
    return json_encode($event->data);
}

function slow($event, $context) {
    sleep(30);
    return "too late";
}

function fail($event, $context) {
    throw new RuntimeException("boom from the handler");
}

function created($event, $context) {
    $response = $event->extensions->response->withStatus(201)->withHeader('X-Made-By', 'php');
    $response->getBody()->write("created " . $event->data);
    return $response;
}

function teapot($event, $context) {
    http_response_code(418);
    return "short and stout";
}
"#;

fn zip(files: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut out));
    let opts = zip::write::SimpleFileOptions::default();
    for (name, body) in files {
        z.start_file(*name, opts).expect("zip entry");
        z.write_all(body.as_bytes()).expect("zip write");
    }
    z.finish().expect("zip");
    out
}

#[test]
fn php_functions_end_to_end() {
    require_tool("php");
    require_tool("composer");
    let s = Server::start();
    let r = s.ok(&["get-server-config"]);
    let config = format!("{}{}", r.stdout, r.stderr);
    assert!(
        config.contains("php8.2") && config.contains("php7.4"),
        "{config}"
    );

    let f = s.file("handlers.php", HANDLERS);
    // Legacy Kubeless runtime ids (php7.4, php7.2) resolve to the installed toolchain.
    let c = Contract {
        lang: "php",
        file: &f,
        handlers: [
            "handlers.hello",
            "handlers.echo_event",
            "handlers.slow",
            "handlers.fail",
            "handlers.created",
        ],
        runtimes: ["php8.2", "php7.4", "php8.2", "php7.2", "php8.2"],
        created_body: "created x",
    };
    deploy_contract(&s, &c);
    deploy(&s, "teapot", "php8.2", "handlers.teapot", &f, &[]);

    // A package vendored in the archive, installed by composer from a path
    // repository, next to an extension Debian ships (php-mbstring).
    let archive = s.file(
        "greet.zip",
        zip(&[
            (
                "greet.php",
                "<?php\nrequire 'vendor/autoload.php';\nfunction handler($event, $context) {\n    return mb_strtoupper(greet('php'));\n}\n",
            ),
            (
                "lib/greeter/composer.json",
                r#"{"name": "acme/greeter", "version": "1.0.0", "autoload": {"files": ["greeter.php"]}}"#,
            ),
            ("lib/greeter/greeter.php", "<?php\nfunction greet($who) { return \"hello $who\"; }\n"),
        ]),
    );
    let composer = s.file(
        "composer.json",
        r#"{"repositories": [{"type": "path", "url": "lib/greeter"}, {"packagist.org": false}],
            "require": {"acme/greeter": "*", "ext-mbstring": "*"}}"#,
    );
    deploy(
        &s,
        "greet",
        "php8.2",
        "greet.handler",
        &archive,
        &["--dependencies", &composer],
    );
    let missing = s.file(
        "missing/composer.json",
        r#"{"require": {"monolog/monolog": "^3.0"}}"#,
    );
    deploy(
        &s,
        "missing",
        "php8.2",
        "handlers.hello",
        &f,
        &["--dependencies", &missing],
    );

    check_contract(&s, &c);

    s.wait_phase("teapot", "Ready", BUILD);
    let resp = gateway_post(&s, "teapot", "");
    assert_eq!(resp.status().as_u16(), 418);
    assert_eq!(resp.text().expect("body"), "short and stout");

    s.wait_phase("greet", "Ready", BUILD);
    assert_eq!(s.ok(&["function", "call", "greet"]).stdout, "HELLO PHP\n");

    let st = s.wait_phase("missing", "Failed", BUILD);
    let reason = st["reason"].as_str().unwrap_or("");
    assert!(reason.contains("dependency installation failed"), "{st}");
    assert!(reason.contains("Packagist is not reachable"), "{st}");
}
