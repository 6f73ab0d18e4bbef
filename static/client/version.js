// The package's version, kept equal to package.json's by tests/package.test.mjs.
export const VERSION = "0.1.0";
