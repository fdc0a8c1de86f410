// Starts a real Magdi server for one test file: its own free port on
// 127.0.0.1, a fresh data directory, stopped by its process id at the end.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const uiTests = resolve(here, '..', '..');
const defaultBinary = resolve(uiTests, '..', 'target', 'debug', 'magdi');

/** The server binary: $MAGDI_BIN, else the repository's debug build. */
export function serverBinary() {
  return process.env.MAGDI_BIN ? resolve(uiTests, process.env.MAGDI_BIN) : defaultBinary;
}

// Asks the kernel for a free port, then lets it go for the server to take.
function freePort() {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => done(port));
    });
  });
}

async function waitUntilHealthy(url, child, output) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`magdi exited with ${child.exitCode} before answering:\n${output.join('')}`);
    }
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((wake) => setTimeout(wake, 100));
  }
  throw new Error(`magdi did not answer /healthz within 30 s:\n${output.join('')}`);
}

/**
 * Starts `magdi serve`; `extraArgs` adds flags such as --daily-token-limit.
 * Returns { url, dataDir, stop }.
 */
export async function startServer(extraArgs = []) {
  const binary = serverBinary();
  if (!existsSync(binary)) {
    throw new Error(`no Magdi binary at ${binary}: build it with cargo build, or set MAGDI_BIN`);
  }
  const dataDir = await mkdtemp(join(tmpdir(), 'magdi-ui-test-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const args = ['serve', '--bind', `127.0.0.1:${port}`, '--data-dir', dataDir, ...extraArgs];

  const output = [];
  const child = spawn(binary, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
  });
  // Kept for the error message when the server does not come up.
  child.stdout.on('data', (chunk) => output.push(chunk.toString()));
  child.stderr.on('data', (chunk) => output.push(chunk.toString()));
  // If this test process dies before `stop`, its server must not outlive it.
  const orphanGuard = () => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
  };
  process.once('exit', orphanGuard);

  try {
    await waitUntilHealthy(url, child, output);
  } catch (error) {
    process.off('exit', orphanGuard);
    await stopProcess(child);
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }

  return {
    url,
    dataDir,
    async stop() {
      process.off('exit', orphanGuard);
      await stopProcess(child);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

// SIGTERM by pid; SIGKILL if it has not gone after five seconds.
async function stopProcess(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((done) => child.once('exit', done));
  process.kill(child.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null) process.kill(child.pid, 'SIGKILL');
  }, 5_000);
  await exited;
  clearTimeout(timer);
}
