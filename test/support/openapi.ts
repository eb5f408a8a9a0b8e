import { RequestMethod } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants.js';
import type { INestApplication } from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { IDEMPOTENT, type IdempotentOptions } from '../../src/idempotency/idempotent.decorator.js';
import { PUBLIC_ROUTE } from '../../src/merchants/public.decorator.js';

export interface OpenApiDocument {
  paths: Record<string, Record<string, Operation>>;
  components: Record<string, Record<string, unknown>>;
}
export interface Operation {
  parameters?: Array<{ $ref?: string; name?: string; in?: string; required?: boolean }>;
  responses: Record<
    string,
    {
      $ref?: string;
      content?: Record<string, { schema: unknown }>;
      headers?: Record<string, unknown>;
    }
  >;
}

export const openApiPath = path.resolve(import.meta.dirname, '../../openapi.yaml');

export function loadOpenApi(): OpenApiDocument {
  return parse(readFileSync(openApiPath, 'utf8')) as OpenApiDocument;
}

/** Follows one local `$ref` (`#/components/...`) in the document. */
export function deref<T>(doc: OpenApiDocument, value: T | { $ref?: string }): T {
  const ref = (value as { $ref?: string }).$ref;
  if (!ref) return value as T;
  return ref
    .slice(2)
    .split('/')
    .reduce<unknown>((node, key) => (node as Record<string, unknown>)[key], doc) as T;
}

export interface RouteInfo {
  method: string;
  /** OpenAPI style: /accounts/{id}. */
  path: string;
  idempotent?: IdempotentOptions;
  isPublic: boolean;
}

/** Every route the running app serves, read from NestJS's own metadata. */
export function appRoutes(app: INestApplication): RouteInfo[] {
  const routes: RouteInfo[] = [];
  for (const module of app.get(ModulesContainer).values()) {
    for (const wrapper of module.controllers.values()) {
      const controller = wrapper.metatype as (new (...args: never[]) => unknown) | null;
      if (!controller) continue;
      const base = String(Reflect.getMetadata(PATH_METADATA, controller) ?? '');
      const proto = controller.prototype as Record<string, unknown>;
      for (const name of Object.getOwnPropertyNames(proto)) {
        const handler = proto[name];
        if (name === 'constructor' || typeof handler !== 'function') continue;
        const method = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
        if (method === undefined) continue;
        const sub = String(Reflect.getMetadata(PATH_METADATA, handler) ?? '');
        const full = `/${[base, sub].filter((p) => p && p !== '/').join('/')}`.replace(/\/+/g, '/');
        routes.push({
          method: RequestMethod[method].toLowerCase(),
          path: full.replace(/:(\w+)/g, '{$1}'),
          idempotent: Reflect.getMetadata(IDEMPOTENT, handler) as IdempotentOptions | undefined,
          isPublic:
            Reflect.getMetadata(PUBLIC_ROUTE, handler) === true ||
            Reflect.getMetadata(PUBLIC_ROUTE, controller) === true,
        });
      }
    }
  }
  return routes;
}

/** Validates response bodies against the schemas the document gives for (method, path, status). */
export class ResponseValidator {
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true });

  constructor(private readonly doc: OpenApiDocument) {
    addFormats.default(this.ajv);
    this.ajv.addSchema({ $id: 'openapi', ...doc, $schema: undefined });
  }

  /** Returns the schema errors (empty when the body matches), or throws if the spec lacks the response. */
  errors(
    method: string,
    path: string,
    status: number,
    contentType: string,
    body: unknown,
  ): string[] {
    const operation = this.doc.paths[path]?.[method];
    if (!operation) throw new Error(`openapi.yaml has no ${method.toUpperCase()} ${path}`);
    const response = operation.responses[String(status)];
    if (!response)
      throw new Error(`openapi.yaml has no ${status} for ${method.toUpperCase()} ${path}`);
    const mediaType = contentType.split(';')[0].trim();
    const resolved = deref(this.doc, response);
    if (!resolved.content?.[mediaType]) {
      throw new Error(
        `openapi.yaml has no ${mediaType} body for ${status} of ${method.toUpperCase()} ${path}`,
      );
    }
    const pointer = response.$ref
      ? `${response.$ref}/content/${escape(mediaType)}/schema`
      : `#/paths/${escape(path)}/${method}/responses/${status}/content/${escape(mediaType)}/schema`;
    const validate = this.ajv.getSchema(`openapi${pointer}`);
    if (!validate) throw new Error(`cannot compile ${pointer}`);
    return validate(body)
      ? []
      : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
  }
}

function escape(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}
