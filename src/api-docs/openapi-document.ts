import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

/**
 * The committed openapi.yaml, the one source of the served spec and docs. It sits
 * two levels above this module both in src/api-docs/ and in dist/api-docs/.
 */
export const OPENAPI_PATH = fileURLToPath(new URL('../../openapi.yaml', import.meta.url));

export interface OpenApiDocuments {
  yaml: string;
  json: string;
}

export function loadOpenApiDocuments(path = OPENAPI_PATH): OpenApiDocuments {
  const yaml = readFileSync(path, 'utf8');
  return { yaml, json: JSON.stringify(parse(yaml)) };
}
