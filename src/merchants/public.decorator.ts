import { SetMetadata } from '@nestjs/common';

export const PUBLIC_ROUTE = Symbol('public-route');

/** A route that needs no API key (health, metrics, docs). */
export const Public = () => SetMetadata(PUBLIC_ROUTE, true);
