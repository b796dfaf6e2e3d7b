#!/usr/bin/env node
/*
 * `npm run build` (and `prepare`, so `npm ci`, `npm install` and `npm pack` in a clone run it): src/ bundled by
 * esbuild into dist/cli/ — main.js plus one chunk per command and chunks of shared code, split at the dynamic
 * imports, so a command loads its own code and nothing more.
 *
 * Why a bundle and not tsc's one file per source file: loading ES modules costs per file (resolution, reading,
 * linking), and `gatehouse check` pulled in ~260 of them (~120 ms of a ~270 ms call; zod and yaml alone are
 * ~180 files). Bundled, `check` reads a handful.
 *
 * zod and yaml (plain JavaScript, no native code, no files read at run time) go into the bundle; every other
 * dependency stays in node_modules and is imported from there as before (bcrypt is native; pino, ftp-srv and
 * the others load files or workers by path). Type checking is `npm run typecheck` (tsc), as before it was
 * part of the tsc build.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const BUNDLED = new Set(['zod', 'yaml']);
const external = Object.keys(pkg.dependencies ?? {}).filter((d) => !BUNDLED.has(d));

/*
 * zod's error messages in every language (`z.locales`, ~50 files, a third of the CLI's bundle) are re-exported by
 * zod's index modules, so the bundler keeps them all. Gatehouse uses the English messages zod sets by default:
 * its locales index is bundled as that one locale (z.locales.en), a third less for every command to parse.
 */
const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(build) {
    build.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]node_modules[\\/]zod[\\/]v4[\\/]/.test(args.importer) ? { path: path.join(path.dirname(args.importer), '../locales/en.js'), namespace: 'zod-locales' } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'zod-locales' }, (args) => ({ contents: `export { default as en } from ${JSON.stringify(args.path)};`, resolveDir: path.dirname(args.path) }));
  },
};

// an optional folder instead of dist/ (to compare builds side by side)
const outdir = path.resolve(root, process.argv[2] ?? 'dist');
fs.rmSync(outdir, { recursive: true, force: true });
await esbuild.build({
  absWorkingDir: root,
  entryPoints: { 'cli/main': 'src/cli/main.ts' },
  outdir,
  // every chunk beside main.js in dist/cli/, so `import.meta.url` is as deep as the source file's was
  chunkNames: 'cli/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external,
  // yaml is CommonJS and requires node built-ins; an ES module has no `require` of its own
  banner: { js: "import { createRequire as __ghCreateRequire } from 'node:module'; const require = __ghCreateRequire(import.meta.url);" },
  plugins: [zodEnglishOnly],
  logLevel: 'warning',
});
