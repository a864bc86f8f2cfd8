// Lint: typescript-eslint's recommended rules plus the house plan's import direction.
import tseslint from 'typescript-eslint';
import layering from './tools/eslint-layering.js';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'guest/**'] },
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.ts'],
    plugins: { azote: layering },
    rules: { 'azote/layering': 'error', 'azote/engine-only': 'error' },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
);
