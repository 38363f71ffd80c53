// esbuild plugin: `import text from 'some/file?raw'` inlines the file as a string (Vite's `?raw`,
// which vitest understands natively). Used for the demo pages and the socket.io-client browser
// bundle, so they live inside dist/ and the single binary with no files beside them. JavaScript is
// minified on the way in.
import { readFile } from 'node:fs/promises';
import { transform } from 'esbuild';

export const rawPlugin = {
  name: 'raw',
  setup(build) {
    build.onResolve({ filter: /\?raw$/ }, async (args) => {
      const spec = args.path.slice(0, -'?raw'.length);
      const resolved = await build.resolve(spec, { kind: 'import-statement', resolveDir: args.resolveDir });
      if (resolved.errors.length > 0) return { errors: resolved.errors };
      return { path: resolved.path, namespace: 'raw' };
    });
    build.onLoad({ filter: /.*/, namespace: 'raw' }, async (args) => {
      let text = await readFile(args.path, 'utf8');
      if (args.path.endsWith('.js')) text = (await transform(text, { minify: true, legalComments: 'none' })).code;
      return { contents: text, loader: 'text' };
    });
  },
};
