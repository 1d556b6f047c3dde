<?php
// The benchmark's PHP handlers (Kubeless conventions; `echo` is a keyword).

function hello($event, $context) {
  return "hello world";
}

function echo_json($event, $context) {
  return json_encode($event->data);
}
