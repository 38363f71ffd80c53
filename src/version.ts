// The version comes from package.json at build time; the commit from CHATD_BUILD_COMMIT (packaging).
import pkg from '../package.json' with { type: 'json' };

export const VERSION: string = pkg.version;
export const BUILD_COMMIT: string = process.env.CHATD_BUILD_COMMIT ?? '';
