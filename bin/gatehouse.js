#!/usr/bin/env node
/*
 * The `gatehouse` command: the compiled CLI (dist/, built by `npm run build`; `npm ci` and `npm install` in a
 * clone run it as `prepare`, and the published tarball carries it) imported into THIS process. No child
 * process, no TypeScript loader: signals sent to this pid reach the server itself, and nothing is resolved
 * from the working directory, so the command works from any folder.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const main = path.join(root, 'dist', 'cli', 'main.js');

let built;
try {
  built = fs.statSync(main).mtimeMs;
} catch {
  process.stderr.write(`gatehouse: ${main} is missing: run \`npm run build\` in ${root} (npm ci does it for you)\n`);
  process.exit(2);
}

// In a clone (the tarball has no src/), say so when the sources changed after the last build.
const src = path.join(root, 'src');
if (fs.existsSync(src)) {
  try {
    // a walk of our own: Node 20's readdirSync({ recursive }) takes ~4 ms here, this ~0.6 ms (every call pays it)
    const newerIn = (dir) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        const found = e.isDirectory() ? newerIn(p) : e.name.endsWith('.ts') && fs.statSync(p).mtimeMs > built ? p : null;
        if (found) return found;
      }
      return null;
    };
    const newer = newerIn(src);
    if (newer) process.stderr.write(`gatehouse: warning: ${path.relative(root, newer)} is newer than dist/: run \`npm run build\` to use your changes\n`);
  } catch {
    /* only a hint */
  }
}

await import(pathToFileURL(main).href);
