// esbuild plugin: `import text from 'some/file?raw'` inlines the file as a string (Vite's `?raw`,
// which vitest understands natively). Used for the demo pages and the socket.io-client browser
// bundle, so they live inside dist/ and the single binary with no files beside them. JavaScript is
// minified on the way in.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { transform } from 'esbuild';

export const rawPlugin = {
  name: 'raw',
  setup(build) {
    build.onResolve({ filter: /\?raw$/ }, async (args) => {
      const spec = args.path.slice(0, -'?raw'.length);
      // Node's own resolution (package exports respected), so it works with `packages: 'external'` too.
      const require = createRequire(path.join(args.resolveDir, 'index.js'));
      return { path: require.resolve(spec), namespace: 'raw' };
    });
    build.onLoad({ filter: /.*/, namespace: 'raw' }, async (args) => {
      let text = await readFile(args.path, 'utf8');
      if (args.path.endsWith('.js')) text = (await transform(text, { minify: true, legalComments: 'none' })).code;
      return { contents: text, loader: 'text' };
    });
  },
};
